//! The table's shape, defined once. The local bootstrap and the tests create tables from
//! [`TABLE`]; a test compares it with the `PaymentsTable` resource in `template.yaml`, so the
//! deployed table and the local one cannot drift apart.

use super::keys::{GSI1PK, GSI1SK, GSI2PK, GSI2SK, GSI3PK, GSI3SK, PK, SK};
use super::{classify, Store, StoreError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;

/// A key: partition attribute and sort attribute (both strings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyShape {
    pub partition: &'static str,
    pub sort: &'static str,
}

/// What a global secondary index copies of each item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexProjection {
    /// Every attribute (the list indexes: a page is served from the index alone).
    All,
    /// The keys and these attributes.
    Include(&'static [&'static str]),
}

/// A global secondary index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexShape {
    pub name: &'static str,
    pub key: KeyShape,
    pub projection: IndexProjection,
}

/// Everything about the table that code depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableShape {
    pub key: KeyShape,
    pub indexes: &'static [IndexShape],
    /// The attribute DynamoDB's TTL deletes expired items by (epoch seconds).
    pub ttl_attribute: &'static str,
    /// What the table's stream carries (the webhook relay reads new events from it).
    pub stream_view: &'static str,
}

pub const GSI1: &str = "GSI1";
pub const GSI2: &str = "GSI2";
/// The timer index: which authorizations lapse when (`keys::EXPIRY_SHARDS`) and which webhook
/// deliveries are due for an attempt (`keys::RETRY_SHARDS`). It carries only what a sweep needs
/// to address the item, which it then reads consistently.
pub const GSI3: &str = "GSI3";

pub const TABLE: TableShape = TableShape {
    key: KeyShape {
        partition: PK,
        sort: SK,
    },
    indexes: &[
        IndexShape {
            name: GSI1,
            key: KeyShape {
                partition: GSI1PK,
                sort: GSI1SK,
            },
            projection: IndexProjection::All,
        },
        IndexShape {
            name: GSI2,
            key: KeyShape {
                partition: GSI2PK,
                sort: GSI2SK,
            },
            projection: IndexProjection::All,
        },
        IndexShape {
            name: GSI3,
            key: KeyShape {
                partition: GSI3PK,
                sort: GSI3SK,
            },
            projection: IndexProjection::Include(&["merchant_id", "id", "endpoint_id"]),
        },
    ],
    ttl_attribute: "expires_at",
    stream_view: "NEW_IMAGE",
};

impl TableShape {
    /// Every attribute that appears in a key, each once, in a stable order.
    pub fn key_attributes(&self) -> Vec<&'static str> {
        let mut names = vec![self.key.partition, self.key.sort];
        for index in self.indexes {
            names.extend([index.key.partition, index.key.sort]);
        }
        names
    }
}

fn key_schema(key: KeyShape) -> Result<Vec<KeySchemaElement>, StoreError> {
    let element = |name: &str, key_type| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))
    };
    Ok(vec![
        element(key.partition, KeyType::Hash)?,
        element(key.sort, KeyType::Range)?,
    ])
}

/// Creates the table (on-demand, with its indexes and TTL) unless it exists already.
/// Returns whether it was created.
pub async fn create_table_if_missing(client: &Client, table: &str) -> Result<bool, StoreError> {
    let exists = client.describe_table().table_name(table).send().await;
    match exists {
        Ok(_) => return Ok(false),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) => {}
        Err(err) => return Err(classify(err)),
    }

    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(TABLE.stream_view))
                .build()
                .map_err(|e| StoreError::Internal(e.to_string()))?,
        )
        .set_key_schema(Some(key_schema(TABLE.key)?));
    for name in TABLE.key_attributes() {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| StoreError::Internal(e.to_string()))?,
        );
    }
    for index in TABLE.indexes {
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index.name)
                .set_key_schema(Some(key_schema(index.key)?))
                .projection(match index.projection {
                    IndexProjection::All => Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                    IndexProjection::Include(attributes) => Projection::builder()
                        .projection_type(ProjectionType::Include)
                        .set_non_key_attributes(Some(
                            attributes.iter().map(|a| (*a).to_owned()).collect(),
                        ))
                        .build(),
                })
                .build()
                .map_err(|e| StoreError::Internal(e.to_string()))?,
        );
    }
    request.send().await.map_err(classify)?;

    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(TABLE.ttl_attribute)
                .enabled(true)
                .build()
                .map_err(|e| StoreError::Internal(e.to_string()))?,
        )
        .send()
        .await
        .map_err(classify)?;
    Ok(true)
}

impl Store {
    /// Creates this store's table unless it exists (local stack and tests).
    pub async fn create_table_if_missing(&self) -> Result<bool, StoreError> {
        create_table_if_missing(self.client(), self.table()).await
    }
}
