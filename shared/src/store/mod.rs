//! DynamoDB access: one table, every merchant-owned item keyed under its merchant.
//!
//! Key layout (see `keys`): a payment and everything under it share the partition
//! `MERCHANT#<mer>#PAYMENT#<pay>`, so one query reads its trail and one transaction changes it;
//! lists go through GSIs keyed by merchant (and status), never a scan. Items map to domain
//! structs with `serde_dynamo`; the keys are added beside the struct's own attributes.

pub mod authorizing;
pub mod client;
pub mod deliveries;
pub mod events;
pub mod expiry;
pub(crate) mod keys;
pub mod merchants;
pub mod payments;
pub mod rate;
pub mod replays;
pub mod sandbox;
pub mod schema;
pub mod secrets;
pub mod webhooks;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use keys::{PK, SK};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Debug;

pub use authorizing::{Authorizing, Started};
pub use deliveries::{Claim, DeliveryRecord, DueDelivery};
pub use events::{EventFilter, EventPosition, OutboxEvent};
pub use expiry::{DueAuthorization, DueBatch, DueCursor, PaymentTimer};
pub use keys::{EXPIRY_SHARDS, RETRY_SHARDS};
pub use merchants::{ApiKeyRecord, Merchant};
pub use payments::{Page, PaymentFilter, RefundWrite, Versioned};
pub use replays::{DueReplay, ReplayRecord, ReplayedDelivery};
pub use secrets::{DeploymentSecret, LazySecret};

/// Why a store call failed.
///
/// For a write, `Unavailable` means the outcome is **unknown**: the SDK gave up after an attempt
/// whose answer was lost (time-out, reset, 500), so the write may have committed. Callers that
/// wrote must find out (read back what their write would have produced) before they answer, and
/// never undo it (../shared/DESIGN.md, "Faults").
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Throttling, time-outs, connection failures: worth retrying later (503). After a write:
    /// it may have been applied.
    #[error("datastore unavailable: {0}")]
    Unavailable(String),
    /// A conditional write found the item not in the expected state.
    #[error("condition not met")]
    ConditionFailed,
    /// Another transaction held one of the items at the same moment (DynamoDB's
    /// `TransactionConflict`): nothing was applied; a lost race, to be decided again.
    #[error("transaction conflict")]
    Conflict,
    /// The request's idempotency claim was taken over (its lock expired) before its write: the
    /// whole transaction was refused and nothing was applied.
    #[error("idempotency claim lost")]
    ClaimLost,
    /// Anything else; a bug or a misconfiguration (500). The text is for logs only.
    #[error("datastore error: {0}")]
    Internal(String),
}

/// The table and the client that reaches it. Cheap to clone; built once per container.
#[derive(Debug, Clone)]
pub struct Store {
    client: Client,
    table: String,
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The production wiring: the table from `TABLE_NAME`, the client from Lambda's
    /// environment (see `client`).
    pub fn from_env() -> Result<Self, crate::config::ConfigError> {
        let table = crate::config::table_name()?;
        Ok(Self::new(
            client::dynamodb(client::Settings::from_env()?),
            table,
        ))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// One strongly consistent read of a key no item has. The SDK client's first call opens
    /// the connection and sets up what it builds lazily (HTTPS connector, endpoint, signing);
    /// this pays for that in init under provisioned concurrency (`App::from_env`), so the first
    /// request does not. An error says DynamoDB could not be read, as the first request would
    /// have found.
    pub async fn warm_up(&self) -> Result<(), StoreError> {
        self.get_item(keys::WARM_UP_PK.to_owned(), keys::WARM_UP_SK)
            .await
            .map(drop)
    }

    /// Stores `item` (the encoding of `record` with its keys) unless an item is stored under
    /// its key, and answers with the stored record: ours, or the first attempt's (a retry, or
    /// the other side of a race, which the caller compares).
    pub(crate) async fn record_once<T>(&self, item: Item, record: &T) -> Result<T, StoreError>
    where
        T: Clone + serde::de::DeserializeOwned,
    {
        match self.put_once(item).await? {
            None => Ok(record.clone()),
            Some(stored) => decode(stored),
        }
    }

    /// [`Store::record_once`]'s writes, one copy for every kind of record: `None` if `item` was
    /// stored, else the item stored under its key.
    async fn put_once(&self, item: Item) -> Result<Option<Item>, StoreError> {
        let (Some(pk), Some(sk)) = (
            item.get(PK).and_then(|v| v.as_s().ok()).cloned(),
            item.get(SK).and_then(|v| v.as_s().ok()).cloned(),
        ) else {
            return Err(StoreError::Internal("a record without its key".into()));
        };
        let put = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await
            .map_err(classify);
        match put {
            Ok(_) => return Ok(None),
            Err(StoreError::ConditionFailed) => {}
            // It may have committed: what is stored decides.
            Err(StoreError::Unavailable(reason)) => {
                tracing::warn!(pk, error = %reason, "record: outcome unknown, reading it back");
            }
            Err(err) => return Err(err),
        }
        self.get_item(pk, &sk)
            .await?
            .map(Some)
            .ok_or_else(|| StoreError::Unavailable("record not stored".into()))
    }

    /// Reads one item by its key (strongly consistent: a write is visible to the next read).
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        pk: String,
        sk: &str,
    ) -> Result<Option<T>, StoreError> {
        self.get_item(pk, sk).await?.map(decode).transpose()
    }

    /// An item with the version its next change must be conditioned on.
    pub(crate) async fn get_versioned<T: DeserializeOwned>(
        &self,
        pk: String,
        sk: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        self.get_item(pk, sk)
            .await?
            .map(|item| {
                let version = version_of(&item)?;
                Ok(Versioned {
                    item: decode(item)?,
                    version,
                })
            })
            .transpose()
    }

    /// The raw item, for callers that need attributes beside the struct's (the version).
    pub(crate) async fn get_item(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(keys::PK, s(pk))
            .key(keys::SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        Ok(output.item)
    }
}

/// A DynamoDB item.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// A string attribute.
pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// The `version` attribute of an item whose changes are conditioned on it.
pub(crate) fn version_of(item: &Item) -> Result<u64, StoreError> {
    item.get("version")
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| StoreError::Internal("item has no version".into()))
}

/// A struct's attributes (serde_dynamo), to which the caller adds the keys.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(value)
        .map_err(|e| StoreError::Internal(format!("item could not be encoded: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item)
        .map_err(|e| StoreError::Internal(format!("item could not be decoded: {e}")))
}

/// Sorts out why a transaction was canceled, from its per-item cancellation reasons: the first
/// item (the one whose state the caller decided from) failing its condition is `ConditionFailed`;
/// a later one failing while the first passed can only be the idempotency completion, whose
/// claim was lost; another transaction holding an item is `Conflict`; capacity is `Unavailable`.
pub(crate) fn classify_transaction(
    err: SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        aws_sdk_dynamodb::config::http::HttpResponse,
    >,
    has_completion: bool,
) -> StoreError {
    let Some(canceled) = err.as_service_error().and_then(|e| match e {
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
        _ => None,
    }) else {
        return classify(err);
    };
    let reasons = canceled.cancellation_reasons();
    let has = |code: &str| reasons.iter().any(|r| r.code() == Some(code));
    let failed = |reason: &aws_sdk_dynamodb::types::CancellationReason| {
        reason.code() == Some("ConditionalCheckFailed")
    };
    let first_failed = reasons.first().is_some_and(failed);
    let last_failed = reasons.last().is_some_and(failed);
    if first_failed {
        StoreError::ConditionFailed
    } else if has_completion && last_failed {
        StoreError::ClaimLost
    } else if reasons.iter().any(failed) {
        StoreError::ConditionFailed
    } else if has("TransactionConflict") {
        StoreError::Conflict
    } else if has("ThrottlingError") || has("ProvisionedThroughputExceeded") {
        StoreError::Unavailable(DisplayErrorContext(&err).to_string())
    } else {
        classify(err)
    }
}

/// A transaction step that creates `item`, failing if an item with its key exists.
pub(crate) fn put_new(table: &str, item: Item) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(#pk)")
        .expression_attribute_names("#pk", keys::PK)
        .build()
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Service codes that mean "try again later" rather than "this request is wrong".
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    // Our own transaction (same ClientRequestToken) is still being applied: its outcome is
    // not known yet, which callers treat like any other unknown outcome.
    "TransactionInProgressException",
];

/// Sorts an SDK error into what the caller can act on. The SDK has already retried transient
/// failures by the time we see them (`client`: attempts, back-off and time-outs).
pub(crate) fn classify<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: Debug,
{
    let text = DisplayErrorContext(&err).to_string();
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => StoreError::Unavailable(text),
        SdkError::ServiceError(service) => match service.err().code() {
            Some("ConditionalCheckFailedException") => StoreError::ConditionFailed,
            // A single-item write that met a transaction in flight on the same item.
            Some("TransactionConflictException") => StoreError::Conflict,
            Some(code) if TRANSIENT_CODES.contains(&code) => StoreError::Unavailable(text),
            _ => StoreError::Internal(text),
        },
        _ => StoreError::Internal(text),
    }
}
