//! `payments-admin webhooks redrive` against DynamoDB Local's own stream: a range an on-failure
//! message names is read back and relayed through the relay's code, once however often it is
//! redriven.

use aws_sdk_dynamodbstreams::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use payments_admin::redrive::{redrive, redrive_from_table, BatchInfo, RedriveError};
use shared::domain::{CaptureMethod, PaymentId};
use shared::testing::{ensure_local_dynamodb, TestApp};

fn streams_client() -> aws_sdk_dynamodbstreams::Client {
    let config = aws_sdk_dynamodbstreams::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "test"))
        .endpoint_url(format!("http://{}", ensure_local_dynamodb()))
        .build();
    aws_sdk_dynamodbstreams::Client::from_conf(config)
}

/// The message Lambda would have sent for the stream record of `payment`'s first event: the
/// range of that one record.
async fn message_for(
    t: &TestApp,
    streams: &aws_sdk_dynamodbstreams::Client,
    payment: &str,
) -> BatchInfo {
    let table = t
        .store()
        .client()
        .describe_table()
        .table_name(t.store().table())
        .send()
        .await
        .unwrap();
    let stream_arn = table.table.unwrap().latest_stream_arn.unwrap();
    let shards = streams
        .describe_stream()
        .stream_arn(&stream_arn)
        .send()
        .await
        .unwrap()
        .stream_description
        .unwrap()
        .shards
        .unwrap();
    for shard in shards {
        let shard_id = shard.shard_id.unwrap();
        let mut iterator = streams
            .get_shard_iterator()
            .stream_arn(&stream_arn)
            .shard_id(&shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        for _ in 0..20 {
            let Some(current) = iterator.take() else {
                break;
            };
            let page = streams
                .get_records()
                .shard_iterator(current)
                .send()
                .await
                .unwrap();
            iterator = page.next_shard_iterator;
            for record in page.records.unwrap_or_default() {
                let change = record.dynamodb.unwrap();
                let pk = change.keys.as_ref().unwrap()["PK"].as_s().unwrap().clone();
                let sk = change.keys.as_ref().unwrap()["SK"].as_s().unwrap().clone();
                if pk.ends_with(payment) && sk.starts_with("EVENT#") {
                    let sequence = change.sequence_number.unwrap();
                    return BatchInfo {
                        stream_arn,
                        shard_id,
                        start_sequence_number: sequence.clone(),
                        end_sequence_number: sequence,
                        approximate_arrival_of_first_record: None,
                        approximate_arrival_of_last_record: None,
                    };
                }
            }
        }
    }
    panic!("no stream record of {payment}'s event");
}

#[tokio::test]
async fn a_named_range_is_relayed_from_the_stream_once_however_often_it_is_redriven() {
    let t = TestApp::new().await;
    let m = t.merchant("acme").await;
    let (endpoint, _) = t.stored_endpoint(&m, "https://example.com/hooks").await;
    let streams = streams_client();
    // The relay gave up on this payment's event: it has no delivery.
    let p = t
        .payment(&m, 2000, CaptureMethod::Automatic, "pm_card_visa")
        .await;
    let deliveries = || async {
        t.store()
            .list_deliveries(&m.id, &endpoint.id, None, 10, None)
            .await
            .unwrap()
            .items
    };
    assert!(deliveries().await.is_empty());
    let message = message_for(&t, &streams, p.id.as_str()).await;

    let done = redrive(t.store(), &streams, t.clock.as_ref(), &message)
        .await
        .unwrap();
    assert_eq!((done.records, done.failed_records), (1, 0), "{done:?}");
    let made = deliveries().await;
    assert_eq!(made.len(), 1);
    assert_eq!(made[0].event_type.as_str(), "payment.succeeded");

    // Redriven again (a message handled twice): nothing more is made.
    let again = redrive(t.store(), &streams, t.clock.as_ref(), &message)
        .await
        .unwrap();
    assert_eq!(again.records, 1);
    assert_eq!(deliveries().await, made);
}

#[tokio::test]
async fn a_range_the_stream_no_longer_holds_is_relayed_from_the_table_by_its_arrival_window() {
    let t = TestApp::new().await;
    let m = t.merchant("acme").await;
    let (endpoint, _) = t.stored_endpoint(&m, "https://example.com/hooks").await;
    let streams = streams_client();
    let p = t
        .payment(&m, 2000, CaptureMethod::Automatic, "pm_card_visa")
        .await;
    // A message about a shard the stream no longer has (as after 24 hours), with the window
    // its range arrived in: around the event's creation.
    let mut message = message_for(&t, &streams, p.id.as_str()).await;
    message.shard_id = "shardId-00000000000000000000-00000000".into();
    let err = redrive(t.store(), &streams, t.clock.as_ref(), &message)
        .await
        .unwrap_err();
    assert!(matches!(err, RedriveError::Trimmed { .. }), "{err}");
    assert!(err.to_string().contains("read from the table"), "{err}");
    let created = p.created_at.as_datetime();
    let at = |d: time::OffsetDateTime| shared::domain::Timestamp::from_datetime(d).to_string();
    message.approximate_arrival_of_first_record = Some(at(created));
    message.approximate_arrival_of_last_record = Some(at(created + time::Duration::seconds(1)));

    // An event long before the window is not relayed.
    t.clock.advance(time::Duration::hours(-2));
    let earlier = t
        .payment(&m, 1000, CaptureMethod::Automatic, "pm_card_visa")
        .await;
    let deliveries = || async {
        t.store()
            .list_deliveries(&m.id, &endpoint.id, None, 10, None)
            .await
            .unwrap()
            .items
    };
    let done = redrive_from_table(t.store(), t.clock.as_ref(), &message, 0.0)
        .await
        .unwrap();
    assert_eq!((done.records, done.failed_records), (1, 0), "{done:?}");
    let made = deliveries().await;
    assert_eq!(made.len(), 1, "{made:?}");
    assert_eq!(made[0].event_id.as_str(), first_event(&t, &m, &p.id).await);
    assert_ne!(
        made[0].event_id.as_str(),
        first_event(&t, &m, &earlier.id).await
    );

    // Again: nothing more.
    redrive_from_table(t.store(), t.clock.as_ref(), &message, 0.0)
        .await
        .unwrap();
    assert_eq!(deliveries().await, made);

    // Without a window there is nothing to go by: an error that says so.
    message.approximate_arrival_of_first_record = None;
    let err = redrive_from_table(t.store(), t.clock.as_ref(), &message, 0.0)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no arrival window"), "{err}");
}

async fn first_event(t: &TestApp, m: &shared::testing::TestMerchant, p: &PaymentId) -> String {
    t.store()
        .list_events(&m.id, p, 1, None)
        .await
        .unwrap()
        .items[0]
        .id
        .to_string()
}
