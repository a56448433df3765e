//! Configuration from the environment, read once at init. The same variables configure the
//! deployed functions (set by template.yaml) and the local stack (set by `make dev`).
//!
//! - `TABLE_NAME`: the DynamoDB table.
//! - `FUNCTION_TIMEOUT_SECONDS`: the function's timeout (template.yaml sets it from the same
//!   parameter as `Timeout`); an idempotency lock lasts this long, so a key whose first request
//!   died frees itself once that request can no longer be running.
//! - `AUTHORIZATION_VALIDITY_HOURS` (template.yaml, from `AuthorizationValidityHours`) or
//!   `AUTHORIZATION_VALIDITY_SECONDS` (the local stack, so that expiry can be tried in seconds;
//!   it wins if both are set): how long an authorization waits for capture (`capture_before`).
//! - `WEBHOOK_ALLOW_LOCAL_URLS`: `true` only in the local stack (`make dev`): webhook endpoints
//!   may then be `http://127.0.0.1:PORT/…` or `http://localhost:PORT/…` (see
//!   `webhooks::destination`). Nothing deployed sets it.
//! - `MERCHANT_WRITE_RATE_LIMIT`: how many POSTs one merchant may start per second (default 100,
//!   Stripe's; 0 turns the guard off). template.yaml sets it from `MerchantWriteRateLimit`.
//! - `PROCESSOR` (template.yaml, from `Processor`): `sandbox` (default) or `stripe`
//!   (`processor::from_env`); with `stripe`, `STRIPE_SECRET_ARN` names the keys' secret and
//!   `STRIPE_API_BASE` where Stripe is (`processor::stripe::keys`), and
//!   `AWS_ENDPOINT_URL_SECRETS_MANAGER` points the keys' read at the local stack's Secrets Manager.
//! - `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`: set by Lambda
//!   itself; the DynamoDB client reads them (`store::client`).
//! - `AWS_ENDPOINT_URL_DYNAMODB`: set only for the local stack, to reach its DynamoDB.
//! - `AWS_LAMBDA_INITIALIZATION_TYPE`: set by Lambda; `provisioned-concurrency` means init runs
//!   ahead of traffic, so the functions warm their DynamoDB connection there (`App::from_env`).

/// A missing or unusable setting; the function refuses to start rather than fail per request.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is not set")]
    Missing(&'static str),
    #[error("environment variable {0} is invalid: {1}")]
    Invalid(&'static str, &'static str),
}

/// Where settings are read from: [`env`] in production; tests pass a map instead of changing
/// the process environment under other threads.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, with an empty value read as unset.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

pub(crate) fn required_in(lookup: Lookup, name: &'static str) -> Result<String, ConfigError> {
    lookup(name).ok_or(ConfigError::Missing(name))
}

fn required(name: &'static str) -> Result<String, ConfigError> {
    required_in(&env, name)
}

pub fn table_name() -> Result<String, ConfigError> {
    required("TABLE_NAME")
}

/// The function timeout, default 10 s (the template's default).
pub fn function_timeout() -> Result<time::Duration, ConfigError> {
    match std::env::var("FUNCTION_TIMEOUT_SECONDS") {
        Err(_) => Ok(DEFAULT_FUNCTION_TIMEOUT),
        Ok(text) => text
            .parse::<u16>()
            .ok()
            .filter(|seconds| (1..=900).contains(seconds))
            .map(|seconds| time::Duration::seconds(i64::from(seconds)))
            .ok_or(ConfigError::Invalid(
                "FUNCTION_TIMEOUT_SECONDS",
                "must be whole seconds from 1 to 900",
            )),
    }
}

/// How long an uncaptured authorization holds when nothing says otherwise: 7 days, about what
/// card networks give (template.yaml's default `AuthorizationValidityHours`).
pub const DEFAULT_AUTHORIZATION_VALIDITY: time::Duration = time::Duration::hours(168);

/// The authorization validity (see the module docs): whole seconds from 1 s to 30 days, or
/// whole hours from 1 to 720 (30 days, the longest extended authorization networks offer).
pub fn authorization_validity(lookup: Lookup) -> Result<time::Duration, ConfigError> {
    validity(
        lookup,
        "AUTHORIZATION_VALIDITY_SECONDS",
        "AUTHORIZATION_VALIDITY_HOURS",
        DEFAULT_AUTHORIZATION_VALIDITY,
    )
}

/// How long a customer has to complete a `requires_action` payment's `next_action` when nothing
/// says otherwise (template.yaml's default `ActionValidityHours`; Stripe's 3-D Secure pages
/// last about as long).
pub const DEFAULT_ACTION_VALIDITY: time::Duration = time::Duration::hours(24);

/// The action validity: `ACTION_VALIDITY_SECONDS` (the local stack's) or `ACTION_VALIDITY_HOURS`,
/// within 30 days, as for authorizations.
pub fn action_validity(lookup: Lookup) -> Result<time::Duration, ConfigError> {
    validity(
        lookup,
        "ACTION_VALIDITY_SECONDS",
        "ACTION_VALIDITY_HOURS",
        DEFAULT_ACTION_VALIDITY,
    )
}

/// The first reconciliation lookup of a `processing` payment, and the unit its back-off doubles
/// from: `RECONCILE_AFTER_SECONDS` (the local stack's: a few seconds), else one minute.
pub fn reconcile_after(lookup: Lookup) -> Result<time::Duration, ConfigError> {
    seconds_up_to_an_hour(
        lookup,
        "RECONCILE_AFTER_SECONDS",
        time::Duration::minutes(1),
    )
}

/// The deployment's deadlines, as every function reads them (the admin CLI's migrations too).
pub fn deadlines(lookup: Lookup) -> Result<crate::domain::Deadlines, ConfigError> {
    Ok(crate::domain::Deadlines {
        authorization: authorization_validity(lookup)?,
        action: action_validity(lookup)?,
        reconcile: reconcile_after(lookup)?,
    })
}

/// How long the sandbox leaves a `pm_card_processing` authorization undecided:
/// `SANDBOX_SETTLE_SECONDS` (the local stack's: 5), else 60 s.
pub fn sandbox_settle_after(lookup: Lookup) -> Result<time::Duration, ConfigError> {
    seconds_up_to_an_hour(
        lookup,
        "SANDBOX_SETTLE_SECONDS",
        crate::processor::sandbox::DEFAULT_SETTLE_AFTER,
    )
}

/// Whole seconds from 1 to 3600 in `name`, or `default` when it is not set.
fn seconds_up_to_an_hour(
    lookup: Lookup,
    name: &'static str,
    default: time::Duration,
) -> Result<time::Duration, ConfigError> {
    match lookup(name) {
        None => Ok(default),
        Some(text) => text
            .parse::<i64>()
            .ok()
            .filter(|seconds| (1..=3600).contains(seconds))
            .map(time::Duration::seconds)
            .ok_or(ConfigError::Invalid(
                name,
                "must be whole seconds from 1 to 3600",
            )),
    }
}

/// A duration given in whole seconds (`seconds_var`, first) or whole hours (`hours_var`), at
/// most 30 days; `default` when neither is set.
fn validity(
    lookup: Lookup,
    seconds_var: &'static str,
    hours_var: &'static str,
    default: time::Duration,
) -> Result<time::Duration, ConfigError> {
    const MAX_SECONDS: i64 = 30 * 24 * 3600;
    let whole = |name, unit: i64, text: String| {
        text.parse::<i64>()
            .ok()
            .map(|n| n * unit)
            .filter(|seconds| (1..=MAX_SECONDS).contains(seconds))
            .map(time::Duration::seconds)
            .ok_or(ConfigError::Invalid(
                name,
                "must be a whole number, at most 30 days",
            ))
    };
    if let Some(seconds) = lookup(seconds_var) {
        whole(seconds_var, 1, seconds)
    } else if let Some(hours) = lookup(hours_var) {
        whole(hours_var, 3600, hours)
    } else {
        Ok(default)
    }
}

/// Whether webhook endpoints may point at this machine (the local stack only).
pub fn webhook_allow_local_urls(lookup: Lookup) -> bool {
    lookup("WEBHOOK_ALLOW_LOCAL_URLS").as_deref() == Some("true")
}

/// How long one run of the webhook retry sweep goes on sweeping (a pass a second), in whole
/// seconds from 0 (one pass) to 840; default 0. Deployed, a run starts every minute and sweeps
/// for 65 s (template.yaml): runs overlap, so a delivery due now is started within about a
/// second; locally a timer starts a run every second instead.
pub fn webhook_retry_window_seconds(lookup: Lookup) -> Result<u64, ConfigError> {
    match lookup("WEBHOOK_RETRY_WINDOW_SECONDS") {
        None => Ok(0),
        Some(text) => text
            .parse::<u64>()
            .ok()
            .filter(|seconds| *seconds <= 840)
            .ok_or(ConfigError::Invalid(
                "WEBHOOK_RETRY_WINDOW_SECONDS",
                "must be whole seconds from 0 to 840",
            )),
    }
}

/// The per-merchant write limit when nothing says otherwise: 100 per second.
pub const DEFAULT_MERCHANT_WRITE_RATE_LIMIT: u32 = 100;

/// The per-merchant write limit (see the module docs): `None` when turned off (0).
pub fn merchant_write_rate_limit(lookup: Lookup) -> Result<Option<u32>, ConfigError> {
    match lookup("MERCHANT_WRITE_RATE_LIMIT") {
        None => Ok(Some(DEFAULT_MERCHANT_WRITE_RATE_LIMIT)),
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|limit| *limit <= 100_000)
            .map(|limit| (limit > 0).then_some(limit))
            .ok_or(ConfigError::Invalid(
                "MERCHANT_WRITE_RATE_LIMIT",
                "must be a whole number of requests per second, 0 (off) to 100000",
            )),
    }
}

/// Lambda's timeout when nothing says otherwise (template.yaml's default).
pub const DEFAULT_FUNCTION_TIMEOUT: time::Duration = time::Duration::seconds(10);

/// Whether Lambda is initialising this container ahead of traffic (provisioned concurrency).
/// Then work done in init is off every request's path; on demand, init and the first request
/// run back to back for the same waiting caller, so moving work between them gains nothing.
pub fn initialised_ahead_of_traffic(lookup: Lookup) -> bool {
    lookup("AWS_LAMBDA_INITIALIZATION_TYPE").as_deref() == Some("provisioned-concurrency")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only<'a>(name: &'a str, value: &'a str) -> impl Fn(&str) -> Option<String> + 'a {
        move |asked: &str| (asked == name).then(|| value.to_owned())
    }

    #[test]
    fn the_sandbox_settles_after_a_minute_unless_set_within_an_hour() {
        let none = |_: &str| None;
        assert_eq!(
            sandbox_settle_after(&none).unwrap(),
            time::Duration::minutes(1)
        );
        assert_eq!(
            sandbox_settle_after(&only("SANDBOX_SETTLE_SECONDS", "5")).unwrap(),
            time::Duration::seconds(5)
        );
        assert!(sandbox_settle_after(&only("SANDBOX_SETTLE_SECONDS", "0")).is_err());
    }

    #[test]
    fn reconcile_after_is_a_minute_unless_set_within_an_hour() {
        let none = |_: &str| None;
        assert_eq!(reconcile_after(&none).unwrap(), time::Duration::minutes(1));
        assert_eq!(
            reconcile_after(&only("RECONCILE_AFTER_SECONDS", "2")).unwrap(),
            time::Duration::seconds(2)
        );
        for bad in ["0", "3601", "1.5", "soon"] {
            assert!(reconcile_after(&only("RECONCILE_AFTER_SECONDS", bad)).is_err());
        }
    }

    #[test]
    fn action_validity_is_read_from_its_own_variables() {
        let none = |_: &str| None;
        assert_eq!(action_validity(&none).unwrap(), time::Duration::hours(24));
        let seconds = only("ACTION_VALIDITY_SECONDS", "30");
        assert_eq!(
            action_validity(&seconds).unwrap(),
            time::Duration::seconds(30)
        );
        let hours = only("ACTION_VALIDITY_HOURS", "2");
        assert_eq!(action_validity(&hours).unwrap(), time::Duration::hours(2));
        assert_eq!(
            authorization_validity(&seconds).unwrap(),
            time::Duration::days(7),
            "the other setting is not read"
        );
        assert!(action_validity(&only("ACTION_VALIDITY_HOURS", "721")).is_err());
    }

    #[test]
    fn authorization_validity_in_seconds_or_hours_within_30_days() {
        let none = |_: &str| None;
        assert_eq!(
            authorization_validity(&none).unwrap(),
            time::Duration::days(7)
        );
        let seconds = only("AUTHORIZATION_VALIDITY_SECONDS", "20");
        assert_eq!(
            authorization_validity(&seconds).unwrap(),
            time::Duration::seconds(20)
        );
        let hours = only("AUTHORIZATION_VALIDITY_HOURS", "48");
        assert_eq!(
            authorization_validity(&hours).unwrap(),
            time::Duration::days(2)
        );
        let both = |name: &str| match name {
            "AUTHORIZATION_VALIDITY_SECONDS" => Some("5".to_owned()),
            "AUTHORIZATION_VALIDITY_HOURS" => Some("48".to_owned()),
            _ => None,
        };
        assert_eq!(
            authorization_validity(&both).unwrap(),
            time::Duration::seconds(5)
        );
        for (name, bad) in [
            ("AUTHORIZATION_VALIDITY_SECONDS", "0"),
            ("AUTHORIZATION_VALIDITY_SECONDS", "-5"),
            ("AUTHORIZATION_VALIDITY_SECONDS", "1.5"),
            ("AUTHORIZATION_VALIDITY_SECONDS", "2592001"),
            ("AUTHORIZATION_VALIDITY_HOURS", "721"),
            ("AUTHORIZATION_VALIDITY_HOURS", "a week"),
        ] {
            assert!(
                authorization_validity(&only(name, bad)).is_err(),
                "{name}={bad}"
            );
        }
    }

    #[test]
    fn the_write_rate_limit_defaults_to_100_and_0_turns_it_off() {
        let none = |_: &str| None;
        assert_eq!(merchant_write_rate_limit(&none).unwrap(), Some(100));
        let set = |value| only("MERCHANT_WRITE_RATE_LIMIT", value);
        assert_eq!(merchant_write_rate_limit(&set("25")).unwrap(), Some(25));
        assert_eq!(merchant_write_rate_limit(&set("0")).unwrap(), None);
        for bad in ["-1", "ten", "1.5", "100001"] {
            assert!(merchant_write_rate_limit(&set(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_provisioned_concurrency_initialises_ahead_of_traffic() {
        let with = |value: Option<&'static str>| {
            move |name: &str| {
                (name == "AWS_LAMBDA_INITIALIZATION_TYPE")
                    .then_some(value)
                    .flatten()
                    .map(str::to_owned)
            }
        };
        assert!(initialised_ahead_of_traffic(&with(Some(
            "provisioned-concurrency"
        ))));
        for other in [Some("on-demand"), Some("snap-start"), None] {
            assert!(!initialised_ahead_of_traffic(&with(other)), "{other:?}");
        }
    }
}
