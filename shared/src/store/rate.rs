//! Per-merchant write admission (`App::respond_post`): how many POSTs a merchant has started in
//! the current second, kept as one counter item per merchant and second, incremented with a
//! condition that it is still below the limit. The item expires by TTL a minute later.
//!
//! What if the increment committed and we saw an error? Then the merchant is charged one
//! request it may not get to make (the SDK's retry of a lost answer can charge one more): an
//! over-count of a few within one second, never an under-count that lets a burst through.
//! What if DynamoDB cannot be reached? The caller admits the request (the guard is for
//! fairness, not correctness: the request's own writes meet the same DynamoDB and fail or not
//! on their own) and logs it.

use super::keys::{self, PK, SK};
use super::{classify, s, Store, StoreError};
use crate::domain::MerchantId;
use aws_sdk_dynamodb::types::AttributeValue;

/// How long a second's counter is kept (TTL deletes it some time after).
const KEEP_SECONDS: i64 = 60;

impl Store {
    /// Counts one write of `merchant` in the second `second` (Unix time) if fewer than `limit`
    /// were counted in it; `Ok(false)` when the limit is reached (nothing counted).
    pub async fn admit_write(
        &self,
        merchant: &MerchantId,
        second: i64,
        limit: u32,
    ) -> Result<bool, StoreError> {
        let counted = self
            .client()
            .update_item()
            .table_name(self.table())
            .key(PK, s(keys::write_rate_pk(merchant)))
            .key(SK, s(second.to_string()))
            .update_expression("ADD #n :one SET #expires = if_not_exists(#expires, :expires)")
            .condition_expression("attribute_not_exists(#n) OR #n < :limit")
            .expression_attribute_names("#n", "requests")
            .expression_attribute_names("#expires", "expires_at")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":limit", AttributeValue::N(limit.to_string()))
            .expression_attribute_values(
                ":expires",
                AttributeValue::N((second + KEEP_SECONDS).to_string()),
            )
            .send()
            .await
            .map_err(classify);
        match counted {
            Ok(_) => Ok(true),
            Err(StoreError::ConditionFailed) => Ok(false),
            Err(err) => Err(err),
        }
    }
}
