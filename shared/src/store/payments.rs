//! Payments and their events.
//!
//! A create writes the payment and its first event in one `TransactWriteItems`, so the audit
//! trail can never miss a state change. Lists query a GSI newest first (ids are time-ordered)
//! and fetch one item more than asked, so `has_more` is exact and the last page says so.

use super::keys::{self, GSI1PK, GSI1SK, GSI2PK, GSI2SK, PK, SK};
use super::schema::{GSI1, GSI2};
use super::{classify, decode, encode, put_new, s, Item, Store, StoreError};
use crate::domain::{Event, MerchantId, Payment, PaymentId, PaymentStatus};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// Which payments a list returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentFilter {
    All,
    Status(PaymentStatus),
}

/// One page of a list: the items and, when more follow, the id to continue after.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub continue_after: Option<String>,
}

fn payment_item(
    merchant: &MerchantId,
    payment: &Payment,
    version: u64,
) -> Result<Item, StoreError> {
    let mut item = encode(payment)?;
    let id = payment.id.as_str();
    item.insert(PK.into(), s(keys::payment_pk(merchant, &payment.id)));
    item.insert(SK.into(), s(keys::PAYMENT_SK));
    item.insert(GSI1PK.into(), s(keys::merchant_payments_gsi(merchant)));
    item.insert(GSI1SK.into(), s(id));
    item.insert(
        GSI2PK.into(),
        s(keys::merchant_payments_by_status_gsi(
            merchant,
            payment.status,
        )),
    );
    item.insert(GSI2SK.into(), s(id));
    item.insert("merchant_id".into(), s(merchant.as_str()));
    item.insert("version".into(), AttributeValue::N(version.to_string()));
    Ok(item)
}

fn event_item(merchant: &MerchantId, event: &Event) -> Result<Item, StoreError> {
    let mut item = encode(event)?;
    item.insert(PK.into(), s(keys::payment_pk(merchant, &event.payment_id)));
    item.insert(SK.into(), s(keys::event_sk(&event.id)));
    Ok(item)
}

impl Store {
    /// Stores a new payment together with the event of its first status, atomically.
    pub async fn create_payment(
        &self,
        merchant: &MerchantId,
        payment: &Payment,
        event: &Event,
    ) -> Result<(), StoreError> {
        self.client()
            .transact_write_items()
            .transact_items(put_new(self.table(), payment_item(merchant, payment, 1)?)?)
            .transact_items(put_new(self.table(), event_item(merchant, event)?)?)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// The merchant's payment with this id, if there is one. Another merchant's payment is
    /// simply not found: the key includes the merchant.
    pub async fn get_payment(
        &self,
        merchant: &MerchantId,
        id: &PaymentId,
    ) -> Result<Option<Payment>, StoreError> {
        self.get(keys::payment_pk(merchant, id), keys::PAYMENT_SK)
            .await
    }

    /// A page of the merchant's payments, newest first, starting after `after` (a payment id
    /// from a previous page's `continue_after`).
    pub async fn list_payments(
        &self,
        merchant: &MerchantId,
        filter: PaymentFilter,
        limit: usize,
        after: Option<&PaymentId>,
    ) -> Result<Page<Payment>, StoreError> {
        let (index, pk_name, sk_name, partition) = match filter {
            PaymentFilter::All => (GSI1, GSI1PK, GSI1SK, keys::merchant_payments_gsi(merchant)),
            PaymentFilter::Status(status) => (
                GSI2,
                GSI2PK,
                GSI2SK,
                keys::merchant_payments_by_status_gsi(merchant, status),
            ),
        };
        let start_key = after.map(|id| {
            HashMap::from([
                (PK.to_owned(), s(keys::payment_pk(merchant, id))),
                (SK.to_owned(), s(keys::PAYMENT_SK)),
                (pk_name.to_owned(), s(partition.clone())),
                (sk_name.to_owned(), s(id.as_str())),
            ])
        });
        let fetch = i32::try_from(limit + 1).unwrap_or(i32::MAX);
        let output = self
            .client()
            .query()
            .table_name(self.table())
            .index_name(index)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", pk_name)
            .expression_attribute_values(":pk", s(partition))
            .scan_index_forward(false)
            .limit(fetch)
            .set_exclusive_start_key(start_key)
            .send()
            .await
            .map_err(classify)?;
        let mut items = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(decode::<Payment>)
            .collect::<Result<Vec<_>, _>>()?;
        let has_more = items.len() > limit;
        items.truncate(limit);
        let continue_after = if has_more {
            items.last().map(|p| p.id.to_string())
        } else {
            None
        };
        Ok(Page {
            items,
            continue_after,
        })
    }

    /// A payment's audit trail, oldest first.
    pub async fn list_events(
        &self,
        merchant: &MerchantId,
        payment: &PaymentId,
    ) -> Result<Vec<Event>, StoreError> {
        let output = self
            .client()
            .query()
            .table_name(self.table())
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(keys::payment_pk(merchant, payment)))
            .expression_attribute_values(":prefix", s("EVENT#"))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(decode)
            .collect()
    }
}
