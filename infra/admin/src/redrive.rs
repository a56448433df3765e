//! Re-relaying the stream records the relay gave up on (README runbook, `WebhookRelayFailuresAlarm`).
//!
//! The stream's on-failure destination (the `WebhookRelayFailures` queue deployed, a file under
//! `make dev`) does not hold records: each message names a *range* of one shard
//! (`DDBStreamBatchInfo`: the stream, the shard, the first and last sequence numbers). So this
//! reads that range back from the stream (it keeps records 24 hours) and hands the records to
//! the relay's own code (`webhook_delivery::relay`), as Lambda would have. Creating deliveries
//! is idempotent (a delivery's id is its (event, endpoint) pair's), so a range redriven twice,
//! or one holding records that were relayed after all, makes each delivery once.
//!
//! Past 24 hours the stream no longer has the records (or the shard): then the events are read
//! from the table instead ([`redrive_from_table`]): every event item created in the window the
//! message says its range arrived in (a minute either side), found by a paced Scan (no index
//! orders every merchant's events by time, and a redrive this late is rare), each relayed as
//! its stream record would have been. The window may hold events beyond the range: those were
//! relayed already, and make nothing more.

use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use aws_sdk_dynamodb::types::AttributeValue as DdbValue;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use shared::clock::Clock;
use shared::store::Store;
use std::cmp::Ordering;

/// Stream records handed to the relay at once (Lambda's batch size for it, template.yaml).
const BATCH: usize = 10;

/// Empty reads of an open shard before the range is taken as read to its end (DynamoDB Streams
/// may answer an empty page before the records that follow it).
const EMPTY_READS: usize = 5;

/// The part of an on-failure message that names the records (Lambda's invocation record for a
/// stream source: its `DDBStreamBatchInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchInfo {
    pub stream_arn: String,
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    #[serde(default)]
    pub approximate_arrival_of_first_record: Option<String>,
    #[serde(default)]
    pub approximate_arrival_of_last_record: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(rename = "DDBStreamBatchInfo")]
    batch: BatchInfo,
}

/// The messages in `text`: one JSON message per line, or a JSON array of them (what
/// `aws sqs receive-message --query 'Messages[].Body'` prints is an array of their bodies as
/// strings, which is accepted too).
pub fn parse_messages(text: &str) -> Result<Vec<BatchInfo>, String> {
    let one = |value: Value| -> Result<BatchInfo, String> {
        let value = match value {
            // An SQS body, as a string holding the JSON.
            Value::String(body) => serde_json::from_str(&body).map_err(|e| e.to_string())?,
            other => other,
        };
        serde_json::from_value::<Message>(value)
            .map(|m| m.batch)
            .map_err(|e| format!("not an on-failure message of a stream source ({e})"))
    };
    let trimmed = text.trim();
    if trimmed.starts_with('[') {
        let values: Vec<Value> = serde_json::from_str(trimmed).map_err(|e| e.to_string())?;
        return values.into_iter().map(one).collect();
    }
    trimmed
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line)
                .map_err(|e| e.to_string())
                .and_then(one)
        })
        .collect()
}

/// What redriving one message did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Redriven {
    /// Records of the range read back from the stream.
    pub records: usize,
    /// Those the relay failed again (still not relayable: see its log lines).
    pub failed_records: usize,
}

/// Why a range could not be redriven.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error(
        "the stream no longer holds records {start}..{end} of {shard} (a stream keeps them 24 \
         hours; they arrived {window}): their events are read from the table instead"
    )]
    Trimmed {
        shard: String,
        start: String,
        end: String,
        window: String,
    },
    #[error("reading the stream failed: {0}")]
    Stream(String),
}

/// Reads the range `info` names back from the stream and relays it, a batch at a time.
pub async fn redrive(
    store: &Store,
    streams: &aws_sdk_dynamodbstreams::Client,
    clock: &dyn Clock,
    info: &BatchInfo,
) -> Result<Redriven, RedriveError> {
    let trimmed = || RedriveError::Trimmed {
        shard: info.shard_id.clone(),
        start: info.start_sequence_number.clone(),
        end: info.end_sequence_number.clone(),
        window: format!(
            "between {} and {}",
            info.approximate_arrival_of_first_record
                .as_deref()
                .unwrap_or("?"),
            info.approximate_arrival_of_last_record
                .as_deref()
                .unwrap_or("?")
        ),
    };
    let started = streams
        .get_shard_iterator()
        .stream_arn(&info.stream_arn)
        .shard_id(&info.shard_id)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .sequence_number(&info.start_sequence_number)
        .send()
        .await;
    let mut iterator = match started {
        Ok(output) => output.shard_iterator,
        Err(err) => {
            let err = err.into_service_error();
            // Trimmed: older than the stream's 24 hours; not found: the shard itself is gone.
            return Err(
                if err.is_trimmed_data_access_exception() || err.is_resource_not_found_exception() {
                    trimmed()
                } else {
                    RedriveError::Stream(err.to_string())
                },
            );
        }
    };
    let mut done = Redriven::default();
    let mut empty = 0;
    let mut past_end = false;
    while let Some(current) = iterator.take() {
        let page = streams
            .get_records()
            .shard_iterator(current)
            .send()
            .await
            .map_err(|err| {
                let err = err.into_service_error();
                if err.is_trimmed_data_access_exception() || err.is_expired_iterator_exception() {
                    trimmed()
                } else {
                    RedriveError::Stream(err.to_string())
                }
            })?;
        iterator = page.next_shard_iterator;
        let records = page.records.unwrap_or_default();
        if records.is_empty() {
            empty += 1;
            if empty >= EMPTY_READS {
                break;
            }
            continue;
        }
        empty = 0;
        let mut in_range = Vec::new();
        for record in &records {
            let sequence = record
                .dynamodb
                .as_ref()
                .and_then(|change| change.sequence_number.as_deref())
                .unwrap_or_default();
            if sequence_cmp(sequence, &info.end_sequence_number) == Ordering::Greater {
                past_end = true;
                break;
            }
            in_range.push(lambda_record(record, &info.stream_arn));
        }
        for batch in in_range.chunks(BATCH) {
            done.records += batch.len();
            let event: StreamEvent =
                serde_json::from_value(json!({ "Records": batch })).map_err(|e| {
                    RedriveError::Stream(format!("a stream record did not convert: {e}"))
                })?;
            let response = webhook_delivery::relay(store, clock, event).await;
            done.failed_records += response.batch_item_failures.len();
        }
        if past_end {
            break;
        }
    }
    Ok(done)
}

/// What the window fallback reads a minute beyond each end of the message's arrival window:
/// an event is written a moment before its stream record arrives.
const WINDOW_MARGIN: time::Duration = time::Duration::minutes(1);

/// Past the stream's retention: relays every event the table holds that was created in the
/// window `info` names (its approximate arrival times, a minute either side), spending at most
/// `units_per_second` of read capacity on the Scan. `Err(Trimmed)` when the message names no
/// window (nothing to go by).
pub async fn redrive_from_table(
    store: &Store,
    clock: &dyn Clock,
    info: &BatchInfo,
    units_per_second: f64,
) -> Result<Redriven, RedriveError> {
    use time::format_description::well_known::Rfc3339;
    let at = |text: &Option<String>| {
        text.as_deref()
            .and_then(|t| time::OffsetDateTime::parse(t, &Rfc3339).ok())
    };
    let (Some(first), Some(last)) = (
        at(&info.approximate_arrival_of_first_record),
        at(&info.approximate_arrival_of_last_record),
    ) else {
        return Err(RedriveError::Stream(format!(
            "the stream no longer holds records {}..{} of {}, and the message names no arrival window to find their events by",
            info.start_sequence_number, info.end_sequence_number, info.shard_id
        )));
    };
    let from = shared::domain::Timestamp::from_datetime(first - WINDOW_MARGIN).to_string();
    let to = shared::domain::Timestamp::from_datetime(last + WINDOW_MARGIN).to_string();
    let mut done = Redriven::default();
    let mut start = None;
    let started = std::time::Instant::now();
    let mut spent = 0.0;
    loop {
        let page = store
            .client()
            .scan()
            .table_name(store.table())
            .filter_expression("begins_with(#sk, :event) AND #at BETWEEN :from AND :to")
            .expression_attribute_names("#sk", "SK")
            .expression_attribute_names("#at", "created_at")
            .expression_attribute_values(":event", DdbValue::S("EVENT#".into()))
            .expression_attribute_values(":from", DdbValue::S(from.clone()))
            .expression_attribute_values(":to", DdbValue::S(to.clone()))
            .set_exclusive_start_key(start)
            .return_consumed_capacity(aws_sdk_dynamodb::types::ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(|e| {
                RedriveError::Stream(format!(
                    "reading the table failed: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(&e)
                ))
            })?;
        let items = page.items.unwrap_or_default();
        spent += page
            .consumed_capacity
            .and_then(|c| c.capacity_units)
            .unwrap_or(0.5 * page.scanned_count.max(0) as f64);
        for item in items {
            let Ok(Some(outbox)) = shared::store::OutboxEvent::from_image(item) else {
                done.failed_records += 1;
                continue;
            };
            done.records += 1;
            if let Err(err) = webhook_delivery::relay::relay_event(store, clock, &outbox).await {
                eprintln!(
                    "redrive: could not create the deliveries of {}: {err}",
                    outbox.event.id
                );
                done.failed_records += 1;
            }
        }
        start = page.last_evaluated_key.filter(|k| !k.is_empty());
        if start.is_none() {
            return Ok(done);
        }
        if units_per_second > 0.0 {
            let due = started + std::time::Duration::from_secs_f64(spent / units_per_second);
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

/// Orders two stream sequence numbers (decimal strings of up to 40 digits, no leading zeros).
fn sequence_cmp(a: &str, b: &str) -> Ordering {
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// A record as Lambda hands it to the relay (the JSON shape of a stream event's record).
fn lambda_record(record: &Record, stream_arn: &str) -> Value {
    let change = record.dynamodb.as_ref();
    let image = |item: Option<&std::collections::HashMap<String, AttributeValue>>| {
        item.map(|item| {
            Value::Object(
                item.iter()
                    .map(|(name, value)| (name.clone(), attribute_json(value)))
                    .collect(),
            )
        })
    };
    let mut dynamodb = Map::new();
    if let Some(keys) = image(change.and_then(|c| c.keys.as_ref())) {
        dynamodb.insert("Keys".into(), keys);
    }
    if let Some(new_image) = image(change.and_then(|c| c.new_image.as_ref())) {
        dynamodb.insert("NewImage".into(), new_image);
    }
    if let Some(sequence) = change.and_then(|c| c.sequence_number.as_deref()) {
        dynamodb.insert("SequenceNumber".into(), sequence.into());
    }
    dynamodb.insert(
        "SizeBytes".into(),
        change.and_then(|c| c.size_bytes).unwrap_or(0).into(),
    );
    if let Some(at) = change.and_then(|c| c.approximate_creation_date_time) {
        dynamodb.insert("ApproximateCreationDateTime".into(), at.secs().into());
    }
    dynamodb.insert("StreamViewType".into(), "NEW_IMAGE".into());
    json!({
        "eventID": record.event_id.as_deref().unwrap_or_default(),
        "eventName": record.event_name.as_ref().map(|n| n.as_str()).unwrap_or_default(),
        "eventVersion": record.event_version.as_deref().unwrap_or("1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.aws_region.as_deref().unwrap_or_default(),
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    })
}

/// One attribute in DynamoDB's JSON form (`{"S": "…"}`). By hand: serde_dynamo converts the
/// Streams SDK's values only with a feature that would build `shared` a second time, with other
/// features, for this CLI alone.
fn attribute_json(value: &AttributeValue) -> Value {
    use base64::Engine as _;
    let b64 = |blob: &aws_sdk_dynamodbstreams::primitives::Blob| {
        Value::from(base64::engine::general_purpose::STANDARD.encode(blob.as_ref()))
    };
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => json!({ "B": b64(b) }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(n) => json!({ "NULL": n }),
        AttributeValue::Ss(list) => json!({ "SS": list }),
        AttributeValue::Ns(list) => json!({ "NS": list }),
        AttributeValue::Bs(list) => json!({ "BS": list.iter().map(b64).collect::<Vec<_>>() }),
        AttributeValue::L(list) => {
            json!({ "L": list.iter().map(attribute_json).collect::<Vec<_>>() })
        }
        AttributeValue::M(map) => json!({
            "M": map.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect::<Map<_, _>>()
        }),
        // A kind newer than this SDK: kept visible rather than dropped (the relay then fails
        // the record, which stays named in the destination).
        _ => json!({ "S": format!("{value:?}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = r#"{"requestContext":{"requestId":"r","functionArn":"arn:aws:lambda:eu-west-1:1:function:relay","condition":"RetryAttemptsExhausted","approximateInvokeCount":11},"responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},"version":"1.0","timestamp":"2026-12-03T10:00:00.000Z","DDBStreamBatchInfo":{"shardId":"shardId-0001","startSequenceNumber":"900","endSequenceNumber":"1000","approximateArrivalOfFirstRecord":"2026-12-03T09:59:00Z","approximateArrivalOfLastRecord":"2026-12-03T09:59:01Z","batchSize":2,"streamArn":"arn:aws:dynamodb:eu-west-1:1:table/payments/stream/x"}}"#;

    #[test]
    fn messages_are_read_from_lines_arrays_and_sqs_bodies() {
        let expected = BatchInfo {
            stream_arn: "arn:aws:dynamodb:eu-west-1:1:table/payments/stream/x".into(),
            shard_id: "shardId-0001".into(),
            start_sequence_number: "900".into(),
            end_sequence_number: "1000".into(),
            approximate_arrival_of_first_record: Some("2026-12-03T09:59:00Z".into()),
            approximate_arrival_of_last_record: Some("2026-12-03T09:59:01Z".into()),
        };
        assert_eq!(
            parse_messages(&format!("{MESSAGE}\n\n{MESSAGE}\n")).unwrap(),
            [expected.clone(), expected.clone()]
        );
        let bodies = serde_json::to_string(&[MESSAGE]).unwrap();
        assert_eq!(parse_messages(&bodies).unwrap(), [expected]);
        assert!(parse_messages(r#"{"DDBStreamBatchInfo":{}}"#).is_err());
        assert!(parse_messages("not json").is_err());
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert_eq!(sequence_cmp("900", "1000"), Ordering::Less);
        assert_eq!(sequence_cmp("1000", "1000"), Ordering::Equal);
        assert_eq!(sequence_cmp("1001", "1000"), Ordering::Greater);
        assert_eq!(sequence_cmp("999", "1000"), Ordering::Less, "not as text");
    }

    #[test]
    fn attributes_keep_dynamodbs_json_form() {
        let value = AttributeValue::M(std::collections::HashMap::from([
            ("s".to_owned(), AttributeValue::S("x".into())),
            (
                "l".to_owned(),
                AttributeValue::L(vec![
                    AttributeValue::N("1".into()),
                    AttributeValue::Bool(true),
                ]),
            ),
        ]));
        assert_eq!(
            attribute_json(&value),
            json!({"M": {"s": {"S": "x"}, "l": {"L": [{"N": "1"}, {"BOOL": true}]}}})
        );
    }
}
