//! Runs the pending migrations (`payments-admin migrate run`, `make dev` before it serves, the
//! deploy workflow after `sam deploy`) and reports where each stands (`migrate status`).
//!
//! **One run at a time**: a lease item (`MIGRATIONS`/`LEASE`) taken with a conditional put,
//! renewed with every checkpoint; a second runner waits for it (up to `wait`) or stops with a
//! message naming the holder. A runner that dies leaves the lease to lapse after
//! [`RunOptions::lease`].
//!
//! **Resumable**: each migration scans the table in [`RunOptions::segments`] parallel scan
//! segments; after every page, a segment's position (`LastEvaluatedKey`) and counts are written
//! to its checkpoint item (`MIGRATIONS`/`<id>#SEGMENT#<n>`), in one transaction with the lease's
//! renewal, so only the lease holder moves them. A run that dies goes on from the last page it
//! checkpointed; the items of the page it was in are looked at again, and those it had changed
//! already are not concerned any more (or fail their guard): nothing is applied twice, nothing
//! skipped.
//!
//! **Paced**: each segment spends at most its share of [`RunOptions::units_per_second`] (read
//! and write capacity units, as DynamoDB reports them for each call), sleeping when ahead.

use super::{Change, Context, Guard, Migration};
use crate::clock::Clock;
use crate::store::{classify, classify_transaction, Item, Store, StoreError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity, TransactWriteItem, Update};
use serde::Serialize;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The partition of the runner's own items (lease, states, checkpoints): outside every
/// `MERCHANT#` partition, and concerned by no migration.
pub const PARTITION: &str = "MIGRATIONS";
const LEASE_SK: &str = "LEASE";

/// How a run goes about it.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Parallel scan segments of a migration that starts now (one in progress keeps its own).
    pub segments: u32,
    /// Capacity units per second the whole run may spend, reads and writes together.
    pub units_per_second: f64,
    /// Items per Scan page (each page is one checkpoint).
    pub page: i32,
    /// How long the lease holds without a renewal (a dead runner's is free after this).
    pub lease: time::Duration,
    /// How long to wait for another run's lease before giving up.
    pub wait: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            segments: 4,
            units_per_second: 400.0,
            page: 100,
            lease: time::Duration::seconds(60),
            wait: Duration::ZERO,
        }
    }
}

/// Why a run stopped early.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("another migration run holds the lease (holder {holder}, until {until}); wait for it, or run again after that")]
    Busy { holder: String, until: String },
    #[error("the lease was lost (this run stalled for longer than the lease and another took over); nothing more was written by this run")]
    LeaseLost,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one segment has done so far (one progress line each page).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub migration: &'static str,
    pub segment: u32,
    pub segments: u32,
    pub scanned: u64,
    pub changed: u64,
    /// Concerned items that did not read as what they claim to be (logged with their key, left).
    pub unreadable: u64,
    pub done: bool,
}

/// Where one migration stands, for `migrate status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MigrationState {
    pub id: &'static str,
    pub purpose: &'static str,
    /// `pending` (never started), `running` (started, not finished: a run goes on from its
    /// checkpoints), `done`, or `failed` (finished with unreadable items; a run starts it over).
    pub status: String,
    pub segments: u32,
    pub segments_done: u32,
    pub scanned: u64,
    pub changed: u64,
    pub unreadable: u64,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}
fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}
fn num(item: &Item, name: &str) -> u64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}
fn segment_sk(id: &str, segment: u32) -> String {
    format!("{id}#SEGMENT#{segment:03}")
}
fn key(sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([("PK".to_owned(), s(PARTITION)), ("SK".to_owned(), s(sk))])
}

/// Every migration's state, in order.
pub async fn status(
    store: &Store,
    migrations: &[Migration],
) -> Result<Vec<MigrationState>, StoreError> {
    let mut states = Vec::new();
    for migration in migrations {
        let stored = store.get_item(PARTITION.to_owned(), migration.id).await?;
        let segments = stored
            .as_ref()
            .map_or(0, |item| num(item, "segments") as u32);
        let mut state = MigrationState {
            id: migration.id,
            purpose: migration.purpose,
            status: stored
                .as_ref()
                .and_then(|item| text(item, "status"))
                .unwrap_or_else(|| "pending".to_owned()),
            segments,
            segments_done: 0,
            scanned: 0,
            changed: 0,
            unreadable: 0,
            started_at: stored.as_ref().and_then(|item| text(item, "started_at")),
            finished_at: stored.as_ref().and_then(|item| text(item, "finished_at")),
        };
        for segment in 0..segments {
            if let Some(item) = store
                .get_item(PARTITION.to_owned(), &segment_sk(migration.id, segment))
                .await?
            {
                state.scanned += num(&item, "scanned");
                state.changed += num(&item, "changed");
                state.unreadable += num(&item, "unreadable");
                if item.get("done").and_then(|v| v.as_bool().ok()) == Some(&true) {
                    state.segments_done += 1;
                }
            }
        }
        states.push(state);
    }
    Ok(states)
}

/// Runs every migration of `migrations` that is not done, in order, under the lease; returns
/// their states after the run. `progress` gets a line per segment per page.
pub async fn run(
    store: &Store,
    context: &Context,
    migrations: &[Migration],
    options: &RunOptions,
    clock: &dyn Clock,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<Vec<MigrationState>, RunError> {
    let lease = Lease::acquire(store, options, clock).await?;
    let outcome = run_held(store, context, migrations, options, clock, progress, &lease).await;
    lease.release(store).await;
    outcome?;
    Ok(status(store, migrations).await?)
}

#[allow(clippy::too_many_arguments)]
async fn run_held(
    store: &Store,
    context: &Context,
    migrations: &[Migration],
    options: &RunOptions,
    clock: &dyn Clock,
    progress: &(dyn Fn(&Progress) + Sync),
    lease: &Lease,
) -> Result<(), RunError> {
    for migration in migrations {
        let stored = store.get_item(PARTITION.to_owned(), migration.id).await?;
        let status = stored.as_ref().and_then(|item| text(item, "status"));
        if status.as_deref() == Some("done") {
            continue;
        }
        // One in progress keeps the segments it was started with (its checkpoints are theirs);
        // a failed one starts over.
        let segments = match (&stored, status.as_deref()) {
            (Some(item), Some("running")) => (num(item, "segments") as u32).max(1),
            _ => options.segments.max(1),
        };
        // When it first started: a resumed run keeps the first run's time.
        let started_at = stored
            .as_ref()
            .filter(|_| status.as_deref() == Some("running"))
            .and_then(|item| text(item, "started_at"))
            .unwrap_or_else(|| crate::domain::Timestamp::from_datetime(clock.now()).to_string());
        if status.as_deref() != Some("running") {
            let mut state = key(migration.id);
            state.insert("status".into(), s("running"));
            state.insert("segments".into(), n(u64::from(segments)));
            state.insert("started_at".into(), s(started_at.clone()));
            let mut writes = vec![put(store, state)?];
            for segment in 0..segments {
                let mut checkpoint = key(&segment_sk(migration.id, segment));
                checkpoint.insert("done".into(), AttributeValue::Bool(false));
                writes.push(put(store, checkpoint)?);
            }
            for chunk in writes.chunks(24) {
                lease.write(store, clock, options, chunk.to_vec()).await?;
            }
        }
        tracing::info!(migration = migration.id, segments, "migration running");
        let runs = (0..segments).map(|segment| {
            Segment {
                store,
                context,
                migration,
                options,
                clock,
                lease,
                segment,
                segments,
                progress,
            }
            .run()
        });
        let results = futures_util::future::join_all(runs).await;
        let mut totals = Progress::default();
        for result in results {
            let done = result?;
            totals.scanned += done.scanned;
            totals.changed += done.changed;
            totals.unreadable += done.unreadable;
        }
        let finished = if totals.unreadable == 0 {
            "done"
        } else {
            "failed"
        };
        let now = crate::domain::Timestamp::from_datetime(clock.now()).to_string();
        let mut state = key(migration.id);
        state.insert("started_at".into(), s(started_at));
        state.insert("status".into(), s(finished));
        state.insert("segments".into(), n(u64::from(segments)));
        state.insert("finished_at".into(), s(now));
        lease
            .write(store, clock, options, vec![put(store, state)?])
            .await?;
        tracing::info!(
            migration = migration.id,
            status = finished,
            scanned = totals.scanned,
            changed = totals.changed,
            unreadable = totals.unreadable,
            "migration finished"
        );
        if finished == "failed" {
            // Later migrations may rely on this one: stop here (its items are logged).
            break;
        }
    }
    Ok(())
}

fn put(store: &Store, item: Item) -> Result<TransactWriteItem, StoreError> {
    let put = aws_sdk_dynamodb::types::Put::builder()
        .table_name(store.table())
        .set_item(Some(item))
        .build()
        .map_err(|e| StoreError::Internal(e.to_string()))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// One scan segment of one migration.
struct Segment<'a> {
    store: &'a Store,
    context: &'a Context,
    migration: &'a Migration,
    options: &'a RunOptions,
    clock: &'a dyn Clock,
    lease: &'a Lease,
    segment: u32,
    segments: u32,
    progress: &'a (dyn Fn(&Progress) + Sync),
}

impl Segment<'_> {
    async fn run(self) -> Result<Progress, RunError> {
        let sk = segment_sk(self.migration.id, self.segment);
        let checkpoint = self
            .store
            .get_item(PARTITION.to_owned(), &sk)
            .await?
            .unwrap_or_default();
        let mut done = Progress {
            migration: self.migration.id,
            segment: self.segment,
            segments: self.segments,
            scanned: num(&checkpoint, "scanned"),
            changed: num(&checkpoint, "changed"),
            unreadable: num(&checkpoint, "unreadable"),
            done: checkpoint.get("done").and_then(|v| v.as_bool().ok()) == Some(&true),
        };
        if done.done {
            return Ok(done);
        }
        let mut next: Option<Item> = checkpoint.get("next").and_then(|v| v.as_m().ok()).cloned();
        let share = self.options.units_per_second / f64::from(self.segments);
        let started = Instant::now();
        let mut spent = 0.0;
        loop {
            let page = self
                .store
                .client()
                .scan()
                .table_name(self.store.table())
                .segment(self.segment as i32)
                .total_segments(self.segments as i32)
                .limit(self.options.page)
                .set_exclusive_start_key(next.clone())
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(classify)?;
            let items = page.items.unwrap_or_default();
            spent += page
                .consumed_capacity
                .and_then(|c| c.capacity_units)
                // DynamoDB Local may not say: half a unit per item read (up to 4 KB each).
                .unwrap_or(0.5 * items.len() as f64);
            for item in items {
                done.scanned += 1;
                if !(self.migration.concerns)(&item) {
                    continue;
                }
                match self.apply(item).await? {
                    Applied::Changed(units) => {
                        done.changed += 1;
                        spent += units;
                    }
                    Applied::Nothing => {}
                    Applied::Unreadable => done.unreadable += 1,
                }
            }
            next = page.last_evaluated_key.filter(|k| !k.is_empty());
            done.done = next.is_none();
            let mut item = key(&sk);
            item.insert("scanned".into(), n(done.scanned));
            item.insert("changed".into(), n(done.changed));
            item.insert("unreadable".into(), n(done.unreadable));
            item.insert("done".into(), AttributeValue::Bool(done.done));
            if let Some(next) = &next {
                item.insert("next".into(), AttributeValue::M(next.clone()));
            }
            self.lease
                .write(
                    self.store,
                    self.clock,
                    self.options,
                    vec![put(self.store, item)?],
                )
                .await?;
            // The checkpoint and the lease renewal: two items of a transaction, 2 units each.
            spent += 4.0;
            (self.progress)(&done);
            if done.done {
                return Ok(done);
            }
            // Paced: never ahead of this segment's share. A long wait (a small table's small
            // share) renews the lease as it goes, so that it never lapses while this run holds it.
            if share > 0.0 {
                let due = started + Duration::from_secs_f64(spent / share);
                let renew_every =
                    Duration::from_secs_f64((self.options.lease.as_seconds_f64() / 3.0).max(0.1));
                while Instant::now() < due {
                    tokio::time::sleep_until((Instant::now() + renew_every).min(due).into()).await;
                    // (Its 2 units are not added to `spent`: counted, they would move `due`
                    // on faster than time when the share is below 6 units/s, and the wait
                    // would never end.)
                    if Instant::now() < due {
                        self.lease
                            .write(self.store, self.clock, self.options, vec![])
                            .await?;
                    }
                }
            }
        }
    }

    /// Applies the migration to one item it concerns; on a failed guard, reads the item again
    /// and decides again (a newer write won; at most a few times).
    async fn apply(&self, mut item: Item) -> Result<Applied, RunError> {
        for _ in 0..RACES {
            let change = match (self.migration.rewrite)(&item, self.context) {
                Ok(Some(change)) => change,
                Ok(None) => return Ok(Applied::Nothing),
                Err(why) => {
                    tracing::error!(migration = self.migration.id, item = %item_key(&item), error = %why, "an item the migration concerns does not read; left as it is");
                    return Ok(Applied::Unreadable);
                }
            };
            match self.update(&item, &change).await {
                Ok(units) => return Ok(Applied::Changed(units)),
                Err(StoreError::ConditionFailed) => {
                    // Changed since it was scanned: what is stored now decides.
                    let (Some(pk), Some(sk)) = (text(&item, "PK"), text(&item, "SK")) else {
                        return Ok(Applied::Nothing);
                    };
                    match self.store.get_item(pk, &sk).await? {
                        Some(now) if (self.migration.concerns)(&now) => item = now,
                        _ => return Ok(Applied::Nothing),
                    }
                }
                Err(err) => return Err(err.into()),
            }
        }
        Err(RunError::Store(StoreError::Conflict))
    }

    async fn update(&self, item: &Item, change: &Change) -> Result<f64, StoreError> {
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let mut sets = Vec::new();
        for (i, (name, value)) in change.set.iter().enumerate() {
            names.insert(format!("#s{i}"), (*name).to_owned());
            values.insert(format!(":s{i}"), value.clone());
            sets.push(format!("#s{i} = :s{i}"));
        }
        let mut removes = Vec::new();
        for (i, name) in change.remove.iter().enumerate() {
            names.insert(format!("#r{i}"), (*name).to_owned());
            removes.push(format!("#r{i}"));
        }
        let mut conditions = vec!["attribute_exists(PK)".to_owned()];
        for (i, guard) in change.guards.iter().enumerate() {
            let name = format!("#g{i}");
            match guard {
                Guard::Absent(attribute) => {
                    names.insert(name.clone(), (*attribute).to_owned());
                    conditions.push(format!("attribute_not_exists({name})"));
                }
                Guard::Present(attribute) => {
                    names.insert(name.clone(), (*attribute).to_owned());
                    conditions.push(format!("attribute_exists({name})"));
                }
                Guard::Equals(attribute, value) => {
                    names.insert(name.clone(), (*attribute).to_owned());
                    values.insert(format!(":g{i}"), value.clone());
                    conditions.push(format!("{name} = :g{i}"));
                }
            }
        }
        let mut expression = String::new();
        if !sets.is_empty() {
            expression.push_str(&format!("SET {}", sets.join(", ")));
        }
        if !removes.is_empty() {
            expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        let output = self
            .store
            .client()
            .update_item()
            .table_name(self.store.table())
            .key("PK", item.get("PK").cloned().unwrap_or(s("")))
            .key("SK", item.get("SK").cloned().unwrap_or(s("")))
            .update_expression(expression.trim())
            .condition_expression(conditions.join(" AND "))
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values((!values.is_empty()).then_some(values))
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await
            .map_err(classify);
        match output {
            Ok(output) => Ok(output
                .consumed_capacity
                .and_then(|c| c.capacity_units)
                .unwrap_or(1.0)),
            // A lost answer: the SDK's retry of our own write fails its guard, and the re-read
            // shows the item migrated (not concerned any more): counted as nothing done, which
            // only understates `changed`.
            Err(err) => Err(err),
        }
    }
}

/// Guard failures in a row on one item before the run gives up on it (and stops).
const RACES: usize = 5;

enum Applied {
    Changed(f64),
    Nothing,
    Unreadable,
}

fn item_key(item: &Item) -> String {
    format!(
        "{}|{}",
        text(item, "PK").unwrap_or_default(),
        text(item, "SK").unwrap_or_default()
    )
}

/// The run's hold on the lease item.
struct Lease {
    holder: String,
}

impl Lease {
    async fn acquire(
        store: &Store,
        options: &RunOptions,
        clock: &dyn Clock,
    ) -> Result<Self, RunError> {
        let holder = uuid::Uuid::now_v7().simple().to_string();
        let waited = Instant::now();
        loop {
            let now = clock.now();
            let mut item = key(LEASE_SK);
            item.insert("holder".into(), s(&holder));
            item.insert("until_ms".into(), n(ms(now + options.lease)));
            let put = store
                .client()
                .put_item()
                .table_name(store.table())
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(PK) OR until_ms < :now")
                .expression_attribute_values(":now", n(ms(now)))
                .send()
                .await
                .map_err(classify);
            match put {
                Ok(_) => return Ok(Self { holder }),
                Err(StoreError::ConditionFailed | StoreError::Unavailable(_)) => {}
                Err(err) => return Err(err.into()),
            }
            // Held by someone (or our own write's answer was lost: then it is ours).
            let current = store.get_item(PARTITION.to_owned(), LEASE_SK).await?;
            let current = current.unwrap_or_default();
            if text(&current, "holder").as_deref() == Some(holder.as_str()) {
                return Ok(Self { holder });
            }
            if waited.elapsed() >= options.wait {
                let until = time::OffsetDateTime::from_unix_timestamp_nanos(
                    i128::from(num(&current, "until_ms")) * 1_000_000,
                )
                .map(|at| crate::domain::Timestamp::from_datetime(at).to_string())
                .unwrap_or_default();
                return Err(RunError::Busy {
                    holder: text(&current, "holder").unwrap_or_default(),
                    until,
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Writes `items` with the lease's renewal, only while this run holds it.
    async fn write(
        &self,
        store: &Store,
        clock: &dyn Clock,
        options: &RunOptions,
        mut items: Vec<TransactWriteItem>,
    ) -> Result<(), RunError> {
        let renew = Update::builder()
            .table_name(store.table())
            .set_key(Some(key(LEASE_SK)))
            .update_expression("SET until_ms = :until")
            .condition_expression("holder = :me")
            .expression_attribute_values(":until", n(ms(clock.now() + options.lease)))
            .expression_attribute_values(":me", s(&self.holder))
            .build()
            .map_err(|e| StoreError::Internal(e.to_string()))?;
        items.insert(0, TransactWriteItem::builder().update(renew).build());
        let written = store
            .client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(|err| classify_transaction(err, false));
        match written {
            Ok(_) => Ok(()),
            Err(StoreError::ConditionFailed) => Err(RunError::LeaseLost),
            Err(err) => Err(err.into()),
        }
    }

    /// Frees the lease for the next run (only ours; a failure just lets it lapse).
    async fn release(&self, store: &Store) {
        let released = store
            .client()
            .update_item()
            .table_name(store.table())
            .set_key(Some(key(LEASE_SK)))
            .update_expression("SET until_ms = :zero")
            .condition_expression("holder = :me")
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":me", s(&self.holder))
            .send()
            .await;
        if let Err(err) = released {
            tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&err), "could not release the migration lease; it lapses by itself");
        }
    }
}

fn ms(at: time::OffsetDateTime) -> u64 {
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

/// What a new on-demand table serves from the start (AWS: 4,000 write and 12,000 read request
/// units per second); a share of it is the default pace of a run on an on-demand table.
pub const ON_DEMAND_BASELINE_UNITS: f64 = 4000.0;

/// Capacity units per second that are `share` of the table's: of its provisioned read and
/// write capacity, or, on demand, of its configured maximum or [`ON_DEMAND_BASELINE_UNITS`].
pub async fn units_for_share(store: &Store, share: f64) -> Result<f64, StoreError> {
    if !(share > 0.0 && share <= 1.0) {
        return Err(StoreError::Internal(
            "--capacity-share must be above 0 and at most 1".into(),
        ));
    }
    let described = store
        .client()
        .describe_table()
        .table_name(store.table())
        .send()
        .await
        .map_err(classify)?;
    let table = described
        .table
        .ok_or_else(|| StoreError::Internal("DescribeTable returned no table".into()))?;
    let provisioned = table.provisioned_throughput.as_ref().map_or(0, |p| {
        p.read_capacity_units.unwrap_or(0) + p.write_capacity_units.unwrap_or(0)
    });
    let on_demand_max = table
        .on_demand_throughput
        .as_ref()
        .and_then(|t| t.max_read_request_units)
        .filter(|max| *max > 0)
        .unwrap_or(0);
    let capacity = if provisioned > 0 {
        provisioned as f64
    } else if on_demand_max > 0 {
        on_demand_max as f64
    } else {
        ON_DEMAND_BASELINE_UNITS
    };
    Ok(capacity * share)
}
