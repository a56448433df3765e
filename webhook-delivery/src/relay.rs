//! The relay: from the table's stream (the outbox: event items written in each change's
//! transaction) to deliveries. For each new event it makes one delivery per enabled endpoint of
//! the event's merchant that subscribes to the type, each created under a claim, then makes
//! every first attempt of the batch at once.
//!
//! Never lost: a record is reported failed (Lambda's partial batch response; the stream retries
//! from it, bisecting, then hands it to the on-failure destination) only when its deliveries
//! could not all be *created*. Creating is idempotent (the delivery id is the pair's), so a retry
//! makes only the missing ones. A failed or interrupted *attempt* is not a record failure: the
//! delivery exists, pending, and the retry sweep takes it when its claim ends.

use crate::attempt::Deliverer;
use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use futures_util::future::join_all;
use shared::domain::Event;
use shared::store::{Claim, DeliveryRecord, OutboxEvent, StoreError};
use shared::webhooks::delivery::Delivery;

/// What one batch did; logged as one line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RelayReport {
    pub events: usize,
    pub deliveries_created: usize,
    pub failed_records: usize,
}

/// Relays one batch of stream records; the response names the records to be retried.
pub async fn relay(deliverer: &Deliverer, batch: StreamEvent) -> DynamoDbEventResponse {
    let mut report = RelayReport::default();
    let mut failures = Vec::new();
    let mut attempts: Vec<(DeliveryRecord, Event, Claim)> = Vec::new();
    for record in batch.records {
        let sequence = record.change.sequence_number.clone();
        match prepare(deliverer, record).await {
            Prepared::NotAnEvent => {}
            Prepared::Deliveries { made, failed } => {
                report.events += 1;
                report.deliveries_created += made.len();
                attempts.extend(made);
                if let Some(err) = failed {
                    tracing::error!(sequence_number = sequence.as_deref().unwrap_or(""), error = %err, "could not create every delivery of an event; the stream retries it");
                    report.failed_records += 1;
                    let mut failure = DynamoDbBatchItemFailure::default();
                    failure.item_identifier = sequence;
                    failures.push(failure);
                }
            }
            Prepared::Unreadable(err) => {
                // Not retried: the same image would fail the same way; the on-failure
                // destination would only get it after every retry. Logged for an operator.
                tracing::error!(sequence_number = sequence.as_deref().unwrap_or(""), error = %err, "stream record is not a readable event; skipped");
            }
        }
    }
    let results = join_all(
        attempts
            .iter()
            .map(|(record, event, claim)| deliverer.attempt(record, Some(event), claim)),
    )
    .await;
    for ((record, _, _), result) in attempts.iter().zip(results) {
        if let Err(err) = result {
            // The delivery stays pending under its claim; the retry sweep takes it after.
            tracing::error!(delivery_id = %record.delivery.id, error = %err, "first attempt could not be completed; the retry sweep takes it when its claim ends");
        }
    }
    tracing::info!(
        events = report.events,
        deliveries_created = report.deliveries_created,
        failed_records = report.failed_records,
        "relay batch finished"
    );
    let mut response = DynamoDbEventResponse::default();
    response.batch_item_failures = failures;
    response
}

enum Prepared {
    NotAnEvent,
    Unreadable(StoreError),
    Deliveries {
        made: Vec<(DeliveryRecord, Event, Claim)>,
        failed: Option<StoreError>,
    },
}

async fn prepare(deliverer: &Deliverer, record: EventRecord) -> Prepared {
    if record.event_name != "INSERT" {
        return Prepared::NotAnEvent;
    }
    let outbox = match OutboxEvent::from_image(record.change.new_image.into()) {
        Ok(Some(outbox)) => outbox,
        Ok(None) => return Prepared::NotAnEvent,
        Err(err) => return Prepared::Unreadable(err),
    };
    let OutboxEvent {
        merchant,
        sequence,
        event,
    } = outbox;
    let store = &deliverer.store;
    // At most 16 endpoints: one page.
    let endpoints = match store
        .list_endpoints(
            &merchant,
            shared::webhooks::endpoint::MAX_ENDPOINTS_PER_MERCHANT,
            None,
        )
        .await
    {
        Ok(page) => page.items,
        Err(err) => {
            return Prepared::Deliveries {
                made: Vec::new(),
                failed: Some(err),
            }
        }
    };
    let mut made = Vec::new();
    let now = deliverer.clock.now();
    for endpoint in endpoints.iter().filter(|e| e.receives(event.event_type)) {
        let delivery = Delivery::new(&event, &endpoint.id, now);
        let claim = deliverer.claim();
        match store
            .create_delivery(&merchant, &delivery, (&event.payment_id, sequence), &claim)
            .await
        {
            Ok(true) => {
                let record = DeliveryRecord {
                    merchant: merchant.clone(),
                    delivery,
                    payment: event.payment_id.clone(),
                    event_sequence: sequence,
                    due: Some(claim.until),
                    claim: Some(claim.token.clone()),
                    attempt_token: None,
                };
                made.push((record, event.clone(), claim));
            }
            // Made before (this record is a retry); on its way already.
            Ok(false) => {}
            Err(err) => {
                return Prepared::Deliveries {
                    made,
                    failed: Some(err),
                }
            }
        }
    }
    Prepared::Deliveries { made, failed: None }
}
