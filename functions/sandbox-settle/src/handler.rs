//! One run of the sandbox's settle sweep: read every shard of the sandbox's settle index for
//! `processing` records due now; for each, decide it (approved: `pm_card_processing` always
//! succeeds), report the decision to the API that asked (`record.api_base` +
//! `/processor_events/sandbox`, a signed event), and only then take the record out of the index.
//!
//! Every step survives being cut off: the decision is conditioned on the record still
//! `processing` (a second run finds it decided and reports the same decision), the event's id
//! is derived from the reference and the outcome (a report sent twice is applied once), and a
//! record leaves the index only after its report was accepted — so a decision is reported at
//! least once, and applied exactly once.

use serde::Serialize;
use shared::domain::{Settlement, Timestamp};
use shared::processor::sandbox::SandboxState;
use shared::store::sandbox::DueSettlement;
pub use shared::sweep::Limits;
use shared::App;
use std::time::Duration;
use webhook_delivery::sandbox_report::Reporter;

/// Batches of 25, at most 1,000 a run (each is an HTTPS call).
pub const LIMITS: Limits = Limits {
    batch: 25,
    most: 1_000,
};

/// What one run did; logged as one line and returned as the invocation's result.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SettleReport {
    /// Index entries found due.
    pub due: usize,
    /// Decisions reported (and taken out of the index).
    pub reported: usize,
    /// Records that could not be read, decided or reported, and unreadable index batches; the
    /// next run tries again.
    pub failed: usize,
    /// Every shard was read to its end.
    pub complete: bool,
}

/// Settles every sandbox record due at the app clock's time.
pub async fn settle(
    app: &App,
    reporter: &Reporter,
    limits: Limits,
    budget: Duration,
) -> SettleReport {
    let now = Timestamp::from_datetime(app.clock.now());
    let mut report = SettleReport::default();
    let read = |shard, limit, after| app.store.due_sandbox_settlements(shard, now, limit, after);
    let pass = shared::sweep::due(
        read,
        limits,
        budget,
        |due: DueSettlement| async move { one(app, reporter, &due.reference).await },
        |due, outcome| match outcome {
            Ok(()) => report.reported += 1,
            Err(why) => {
                report.failed += 1;
                tracing::warn!(reference = due.reference, error = %why, "sandbox decision not reported; the next run tries again");
            }
        },
    )
    .await;
    report.due = pass.due;
    report.failed += pass.unreadable + pass.poison;
    report.complete = pass.complete;
    tracing::info!(
        due = report.due,
        reported = report.reported,
        failed = report.failed,
        complete = report.complete,
        "sandbox settle finished"
    );
    report
}

async fn one(app: &App, reporter: &Reporter, reference: &str) -> Result<(), String> {
    let decided = app
        .store
        .decide_sandbox_authorization(
            reference,
            SandboxState::Processing,
            SandboxState::Approved,
            None,
        )
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no such sandbox record")?;
    let settlement = match (decided.state, decided.failure.clone()) {
        (SandboxState::Approved, _) => Settlement::Approved,
        (SandboxState::Declined, Some(failure)) => Settlement::Declined(failure),
        (state, _) => return Err(format!("the record is {state:?}, not decided")),
    };
    let api_base = decided
        .api_base
        .as_deref()
        .ok_or("the record does not say where to report")?;
    reporter
        .report(&app.store, api_base, &decided, &settlement, app.clock.now())
        .await
        .map_err(|e| e.to_string())?;
    app.store
        .settled_sandbox_reported(reference)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use shared::clock::Clock;
    use shared::domain::{CaptureMethod, PaymentStatus};
    use shared::processor::events::SANDBOX_SIGNATURE_HEADER;
    use shared::testing::{request, TestApp};
    use std::sync::{Arc, Mutex};
    use webhook_delivery::sandbox_report::EventSink;

    const BUDGET: Duration = Duration::from_secs(60);

    /// The processor-event route's handler, reached as over HTTP (or refusing, like a route
    /// that is down).
    struct Route {
        app: Arc<TestApp>,
        refuse: Mutex<bool>,
        urls: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl EventSink for Route {
        async fn deliver(&self, url: &str, signature: &str, body: &str) -> Result<(), String> {
            self.urls.lock().unwrap().push(url.to_owned());
            if *self.refuse.lock().unwrap() {
                return Err("refused".into());
            }
            let req = request("processor-events")
                .path_param("processor", "sandbox")
                .header(SANDBOX_SIGNATURE_HEADER, signature)
                .raw_body(body)
                .build();
            let verifier = processor_events::Verifier::default();
            match processor_events::processor_events(&self.app.app, &verifier, req)
                .await
                .status()
                .as_u16()
            {
                200 => Ok(()),
                status => Err(status.to_string()),
            }
        }
    }

    #[tokio::test]
    async fn a_processing_payment_is_decided_when_its_time_comes_and_reported_once() {
        let t = Arc::new(TestApp::new().await);
        let m = t.merchant("acme").await;
        let route = Arc::new(Route {
            app: t.clone(),
            refuse: Mutex::new(true),
            urls: Mutex::default(),
        });
        let reporter = Reporter::new(route.clone());
        let p = t
            .payment(&m, 700, CaptureMethod::Automatic, "pm_card_processing")
            .await;
        assert_eq!(p.status, PaymentStatus::Processing);

        // Not due yet (the sandbox decides 60 s later by default).
        let early = settle(&t.app, &reporter, LIMITS, BUDGET).await;
        assert_eq!((early.due, early.reported), (0, 0));

        // Due, but the route is down: decided on the sandbox's side, still in the index.
        t.clock.advance(time::Duration::seconds(61));
        let down = settle(&t.app, &reporter, LIMITS, BUDGET).await;
        assert_eq!(
            (down.due, down.reported, down.failed),
            (1, 0, 1),
            "{down:?}"
        );
        let stored = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
        assert_eq!(
            stored.status,
            PaymentStatus::Processing,
            "only the event changes it"
        );

        // The route is back: the same decision is reported, the payment settles, and the
        // record leaves the index.
        *route.refuse.lock().unwrap() = false;
        let up = settle(&t.app, &reporter, LIMITS, BUDGET).await;
        assert_eq!((up.due, up.reported, up.failed), (1, 1, 0), "{up:?}");
        let settled = t.store().get_payment(&m.id, &p.id).await.unwrap().unwrap();
        assert_eq!(
            (settled.status, settled.amount_captured),
            (PaymentStatus::Succeeded, 700)
        );
        assert_eq!(
            t.event_types(&m, &p.id).await,
            ["payment.processing", "payment.succeeded"]
        );
        let again = settle(&t.app, &reporter, LIMITS, BUDGET).await;
        assert_eq!(again.due, 0, "{again:?}");
        assert_eq!(
            route.urls.lock().unwrap()[0],
            "http://127.0.0.1:9000/processor_events/sandbox",
            "reported to the API that asked"
        );
        let _ = t.clock.now();
    }
}
