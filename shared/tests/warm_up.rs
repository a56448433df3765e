//! `Store::warm_up`, the read the functions make in init under provisioned concurrency: it must
//! reach DynamoDB (so it really opens the connection) and succeed on a live table although no
//! item has its key.

use shared::testing::{store_without_table, TestApp};

#[tokio::test]
async fn warm_up_reads_a_live_table() {
    let t = TestApp::new().await;
    t.store()
        .warm_up()
        .await
        .expect("reading the warm-up key of a live table succeeds");
}

#[tokio::test]
async fn warm_up_reports_a_table_it_cannot_read() {
    assert!(store_without_table().warm_up().await.is_err());
}
