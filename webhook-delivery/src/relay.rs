//! The relay: from the table's stream (the outbox: event items written in each change's
//! transaction) to deliveries. For each new event it creates one delivery per enabled endpoint
//! of the event's merchant that subscribes to the type — pending and due at once — and returns.
//! It makes no attempt: attempts are the dispatcher's (`retry`), whose limits per endpoint and
//! per merchant keep a slow or hostile endpoint from holding up anyone else's deliveries (a
//! relay that waited for its batch's attempts held the stream shard behind it, every
//! merchant's events, for as long as the slowest endpoint in the batch).
//!
//! Never lost: a record is reported failed (Lambda's partial batch response; the stream retries
//! from it, bisecting, then hands it to the on-failure destination) when its deliveries could
//! not all be created, or when it cannot be read at all. Creating is idempotent (the delivery
//! id is the pair's), so a retry makes only the missing ones.

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use shared::clock::Clock;
use shared::store::{OutboxEvent, Store, StoreError};
use shared::webhooks::delivery::Delivery;

/// What one batch did; logged as one line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RelayReport {
    pub events: usize,
    pub deliveries_created: usize,
    pub failed_records: usize,
}

/// Relays one batch of stream records; the response names the records to be retried.
pub async fn relay(store: &Store, clock: &dyn Clock, batch: StreamEvent) -> DynamoDbEventResponse {
    let mut report = RelayReport::default();
    let mut failures = Vec::new();
    for record in batch.records {
        let sequence = record.change.sequence_number.clone();
        // Boxed: a record's future nests the SDK's (a Query, then a put per endpoint), and
        // inline here it exceeds rustc's layout depth limit in the function's `main`.
        let failed = match Box::pin(prepare(store, clock, record)).await {
            Prepared::NotAnEvent => None,
            Prepared::Deliveries { made, failed } => {
                report.events += 1;
                report.deliveries_created += made;
                failed.map(|err| {
                    tracing::error!(sequence_number = sequence.as_deref().unwrap_or(""), error = %err, "could not create every delivery of an event; the stream retries it");
                })
            }
            Prepared::Unreadable(err) => {
                // Failed, not skipped: the stream retries it (an image that cannot be read
                // fails again), then hands its position to the on-failure destination
                // (alarmed), from where an operator relays it again once the code reads it.
                // Skipping would lose its webhooks without a trace.
                tracing::error!(sequence_number = sequence.as_deref().unwrap_or(""), error = %err, "stream record is not a readable event; reported failed");
                Some(())
            }
        };
        if failed.is_some() {
            report.failed_records += 1;
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = sequence;
            failures.push(failure);
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
        made: usize,
        failed: Option<StoreError>,
    },
}

async fn prepare(store: &Store, clock: &dyn Clock, record: EventRecord) -> Prepared {
    if record.event_name != "INSERT" {
        return Prepared::NotAnEvent;
    }
    let outbox = match OutboxEvent::from_image(record.change.new_image.into()) {
        Ok(Some(outbox)) => outbox,
        Ok(None) => return Prepared::NotAnEvent,
        Err(err) => return Prepared::Unreadable(err),
    };
    deliveries_for(store, clock, &outbox).await
}

/// Creates the deliveries of one event read from the table rather than the stream (the admin
/// CLI's redrive, past the stream's 24 hours), as a stream record of it would: idempotent, so an
/// event relayed before makes nothing more. Answers how many deliveries were made.
pub async fn relay_event(
    store: &Store,
    clock: &dyn Clock,
    outbox: &OutboxEvent,
) -> Result<usize, StoreError> {
    match deliveries_for(store, clock, outbox).await {
        Prepared::Deliveries {
            failed: Some(err), ..
        } => Err(err),
        Prepared::Deliveries { made, failed: None } => Ok(made),
        Prepared::NotAnEvent => Ok(0),
        Prepared::Unreadable(err) => Err(err),
    }
}

/// Creates the deliveries of one event: one per enabled endpoint of its merchant that
/// subscribes to its type.
async fn deliveries_for(store: &Store, clock: &dyn Clock, outbox: &OutboxEvent) -> Prepared {
    let OutboxEvent {
        merchant,
        sequence,
        event,
    } = outbox;
    // At most 16 endpoints: one page.
    let endpoints = match store
        .list_endpoints(
            merchant,
            shared::webhooks::endpoint::MAX_ENDPOINTS_PER_MERCHANT,
            None,
        )
        .await
    {
        Ok(page) => page.items,
        Err(err) => {
            return Prepared::Deliveries {
                made: 0,
                failed: Some(err),
            }
        }
    };
    let mut made = 0;
    let now = clock.now();
    for endpoint in endpoints.iter().filter(|e| e.receives(event.event_type)) {
        let delivery = Delivery::new(event, &endpoint.id, now);
        match store
            .create_delivery(merchant, &delivery, (&event.payment_id, *sequence))
            .await
        {
            Ok(true) => made += 1,
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
