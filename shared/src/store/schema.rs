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
    request = request.set_attribute_definitions(Some(attribute_definitions()?));
    for index in TABLE.indexes {
        request = request.global_secondary_indexes(index_definition(index)?);
    }
    request.send().await.map_err(classify)?;
    enable_ttl(client, table).await?;
    Ok(true)
}

fn attribute_definitions() -> Result<Vec<AttributeDefinition>, StoreError> {
    TABLE
        .key_attributes()
        .into_iter()
        .map(|name| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| StoreError::Internal(e.to_string()))
        })
        .collect()
}

fn projection(index: &IndexShape) -> Projection {
    match index.projection {
        IndexProjection::All => Projection::builder()
            .projection_type(ProjectionType::All)
            .build(),
        IndexProjection::Include(attributes) => Projection::builder()
            .projection_type(ProjectionType::Include)
            .set_non_key_attributes(Some(attributes.iter().map(|a| (*a).to_owned()).collect()))
            .build(),
    }
}

fn index_definition(index: &IndexShape) -> Result<GlobalSecondaryIndex, StoreError> {
    GlobalSecondaryIndex::builder()
        .index_name(index.name)
        .set_key_schema(Some(key_schema(index.key)?))
        .projection(projection(index))
        .build()
        .map_err(|e| StoreError::Internal(e.to_string()))
}

async fn enable_ttl(client: &Client, table: &str) -> Result<(), StoreError> {
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
    Ok(())
}

/// What [`ensure_table`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ensured {
    pub created: bool,
    /// What an existing table was given: `index GSI3`, `stream`, `ttl`.
    pub upgraded: Vec<String>,
}

/// The table as [`TABLE`] defines it: created when missing; an existing one of an earlier
/// version (the local stack's DynamoDB kept across upgrades) gets what it lacks, as
/// CloudFormation does on a deploy: each missing index (one `UpdateTable` at a time, waiting
/// for it to be active, as DynamoDB requires), the stream, the TTL. An index of the same name
/// with another key or projection cannot be changed in place: that is an error naming it.
pub async fn ensure_table(client: &Client, table: &str) -> Result<Ensured, StoreError> {
    if create_table_if_missing(client, table).await? {
        return Ok(Ensured {
            created: true,
            upgraded: vec![],
        });
    }
    let mut upgraded = Vec::new();
    let described = describe(client, table).await?;
    let stream_on = described
        .stream_specification()
        .is_some_and(|spec| spec.stream_enabled());
    if !stream_on {
        client
            .update_table()
            .table_name(table)
            .stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::from(TABLE.stream_view))
                    .build()
                    .map_err(|e| StoreError::Internal(e.to_string()))?,
            )
            .send()
            .await
            .map_err(classify)?;
        upgraded.push("stream".to_owned());
    }
    for index in TABLE.indexes {
        let existing = described
            .global_secondary_indexes()
            .iter()
            .find(|gsi| gsi.index_name() == Some(index.name));
        match existing {
            Some(gsi) => {
                let keys: Vec<&str> = gsi
                    .key_schema()
                    .iter()
                    .map(|k| k.attribute_name())
                    .collect();
                let same_projection = gsi.projection().is_some_and(|p| {
                    let want = projection(index);
                    let mut have: Vec<String> = p.non_key_attributes().to_vec();
                    let mut wanted: Vec<String> = want.non_key_attributes().to_vec();
                    have.sort();
                    wanted.sort();
                    p.projection_type() == want.projection_type() && have == wanted
                });
                if keys != [index.key.partition, index.key.sort] || !same_projection {
                    return Err(StoreError::Internal(format!(
                        "index {} of table {table} has another key or projection than this                          version's; it cannot be changed in place: delete it (UpdateTable) and                          run this again to create it anew",
                        index.name
                    )));
                }
            }
            None => {
                client
                    .update_table()
                    .table_name(table)
                    .set_attribute_definitions(Some(attribute_definitions()?))
                    .global_secondary_index_updates(
                        aws_sdk_dynamodb::types::GlobalSecondaryIndexUpdate::builder()
                            .create(
                                aws_sdk_dynamodb::types::CreateGlobalSecondaryIndexAction::builder(
                                )
                                .index_name(index.name)
                                .set_key_schema(Some(key_schema(index.key)?))
                                .projection(projection(index))
                                .build()
                                .map_err(|e| StoreError::Internal(e.to_string()))?,
                            )
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(classify)?;
                wait_for_index(client, table, index.name).await?;
                upgraded.push(format!("index {}", index.name));
            }
        }
    }
    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(classify)?;
    let ttl_on = ttl.time_to_live_description().is_some_and(|d| {
        d.attribute_name() == Some(TABLE.ttl_attribute)
            && matches!(
                d.time_to_live_status(),
                Some(aws_sdk_dynamodb::types::TimeToLiveStatus::Enabled)
                    | Some(aws_sdk_dynamodb::types::TimeToLiveStatus::Enabling)
            )
    });
    if !ttl_on {
        enable_ttl(client, table).await?;
        upgraded.push("ttl".to_owned());
    }
    Ok(Ensured {
        created: false,
        upgraded,
    })
}

async fn describe(
    client: &Client,
    table: &str,
) -> Result<aws_sdk_dynamodb::types::TableDescription, StoreError> {
    client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(classify)?
        .table
        .ok_or_else(|| StoreError::Internal("DescribeTable returned no table".into()))
}

/// Waits (up to 10 minutes) for a new index to be active: the next `UpdateTable` that creates
/// one is refused until then, and queries of it fail.
async fn wait_for_index(client: &Client, table: &str, name: &str) -> Result<(), StoreError> {
    for _ in 0..1200 {
        let described = describe(client, table).await?;
        let active = described
            .global_secondary_indexes()
            .iter()
            .find(|gsi| gsi.index_name() == Some(name))
            .is_some_and(|gsi| {
                gsi.index_status() == Some(&aws_sdk_dynamodb::types::IndexStatus::Active)
            });
        if active {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Err(StoreError::Unavailable(format!(
        "index {name} of {table} is not active after 10 minutes"
    )))
}

impl Store {
    /// Creates this store's table unless it exists (local stack and tests).
    pub async fn create_table_if_missing(&self) -> Result<bool, StoreError> {
        create_table_if_missing(self.client(), self.table()).await
    }

    /// [`ensure_table`] for this store's table (the local stack's `admin table create`).
    pub async fn ensure_table(&self) -> Result<Ensured, StoreError> {
        ensure_table(self.client(), self.table()).await
    }
}
