//! The Stripe connector: payments as PaymentIntents, refunds as Refunds (API.md, "Payment
//! processor" → "Stripe"), tested against localstripe (`shared/tests/stripe_connector.rs`).
//!
//! How each call stays safe when its answer is lost, without trusting Stripe to replay an
//! `Idempotency-Key` (localstripe does not replay at all, and Stripe only for 24 h):
//! - **prepare** creates the PaymentIntent unconfirmed (no money can move; a lost create is an
//!   `Err`, and at worst leaves an unconfirmed intent nobody confirms); its `pi_…` id is stored
//!   (`store::authorizing`) before **authorize** confirms it. A lost confirm is
//!   [`Authorization::Unknown`]: reconciliation looks the PaymentIntent up by that id. A confirm
//!   refused because the intent was already confirmed (a retry) is answered by retrieving it.
//! - **lookup** of an intent still `requires_confirmation` (our confirm never reached Stripe)
//!   cancels it first, so that no late confirm can charge after we recorded a failure.
//! - **capture / cancel** are refused by Stripe when repeated; the connector then retrieves the
//!   intent and answers from its state (the same capture → `Ok`, the other operation → `Refused`).
//! - **refund** first lists the intent's refunds for one carrying our `refund_id` in its
//!   metadata, and creates one only when there is none.
//!
//! Every request carries `Stripe-Version` ([`http::STRIPE_VERSION`]) and an `Idempotency-Key`
//! derived from our ids; our ids also go into Stripe `metadata` (`payment_id`, `merchant_id`,
//! `refund_id`). The refund `reason` goes into metadata too: localstripe refuses Stripe's
//! `reason` field, and it is only a label at Stripe.

pub mod events;
pub mod form;
pub mod http;
pub mod keys;

use super::{AuthorizationRequest, Held, Lookup, PaymentProcessor, ProcessorError, RefundCall};
use crate::domain::{
    Amount, Authorization, CaptureMethod, Failure, NextAction, ProcessorName, RedirectToUrl,
    RefundReason, RefundStatus, ReturnUrl, Settlement,
};
use ::http::Method;
use async_trait::async_trait;
use form::Form;
use http::{CallBudget, CallError, Sent, CALL_BUDGET};
use serde_json::Value;

/// Where Stripe is and how we authenticate to it.
#[derive(Clone)]
pub struct StripeProcessor {
    /// `https://api.stripe.com`, or localstripe's `http://127.0.0.1:<port>` locally.
    api_base: String,
    keys: std::sync::Arc<keys::Keys>,
    budget: CallBudget,
}

impl std::fmt::Debug for StripeProcessor {
    // The secret key is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeProcessor")
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

impl StripeProcessor {
    pub fn new(api_base: impl Into<String>, keys: keys::Keys) -> Self {
        Self {
            api_base: api_base.into().trim_end_matches('/').to_owned(),
            keys: std::sync::Arc::new(keys),
            budget: CALL_BUDGET,
        }
    }

    /// The deployment's: `STRIPE_API_BASE` and the keys in `STRIPE_SECRET_ARN` (`keys`).
    pub fn from_env(lookup: crate::config::Lookup) -> Result<Self, crate::config::ConfigError> {
        Ok(Self::new(
            keys::api_base(lookup)?,
            keys::Keys::from_env(lookup)?,
        ))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        idempotency_key: Option<&str>,
        form: Form,
    ) -> Result<Sent, CallError> {
        let encoded = form.encode();
        let (url, body) = if method == Method::GET && !encoded.is_empty() {
            (format!("{}{path}?{encoded}", self.api_base), String::new())
        } else {
            (format!("{}{path}", self.api_base), encoded)
        };
        let keys = self
            .keys
            .get()
            .await
            .map_err(|err| CallError::NotSent(err.to_string()))?;
        let sent = http::send(
            method,
            &url,
            &keys.secret_key,
            idempotency_key,
            body,
            self.budget,
        )
        .await?;
        if sent.status >= 400 {
            tracing::info!(
                status = sent.status,
                stripe_request_id = %sent.request_id,
                error_type = sent.body["error"]["type"].as_str().unwrap_or(""),
                error_code = sent.body["error"]["code"].as_str().unwrap_or(""),
                path,
                "stripe answered with an error"
            );
        }
        Ok(sent)
    }

    /// What was captured, for an emulator whose intents lack `amount_received` (localstripe):
    /// the charge's amount less the refund it makes itself for the uncaptured rest of a partial
    /// capture (the one refund without our `refund_id`).
    async fn captured_by_charge(&self, reference: &str) -> Result<Amount, ProcessorError> {
        let sent = self
            .call(
                Method::GET,
                &format!("/v1/payment_intents/{reference}"),
                None,
                Form::new().field("expand[]", "latest_charge"),
            )
            .await
            .map_err(read_error)?;
        if sent.status != 200 {
            return Err(answer_error(sent.status, &sent));
        }
        let charge = &sent.body["latest_charge"];
        let released: i64 = charge["refunds"]["data"]
            .as_array()
            .map(|refunds| {
                refunds
                    .iter()
                    .filter(|r| r["metadata"]["refund_id"].is_null())
                    .filter_map(|r| r["amount"].as_i64())
                    .sum()
            })
            .unwrap_or(0);
        charge["amount"]
            .as_i64()
            .and_then(|amount| Amount::parse(amount - released).ok())
            .ok_or_else(|| ProcessorError::Rejected("a captured intent without a charge".into()))
    }

    async fn retrieve(&self, reference: &str) -> Result<Value, ProcessorError> {
        let sent = self
            .call(
                Method::GET,
                &format!("/v1/payment_intents/{reference}"),
                None,
                Form::new(),
            )
            .await
            .map_err(read_error)?;
        match sent.status {
            200 => Ok(sent.body),
            status => Err(answer_error(status, &sent)),
        }
    }
}

/// A read that failed moved nothing, whichever way it failed.
fn read_error(err: CallError) -> ProcessorError {
    ProcessorError::Unavailable(err.to_string())
}

/// A write whose answer is lost may have been applied.
fn write_error(err: CallError) -> ProcessorError {
    match err {
        CallError::NotSent(text) => ProcessorError::Unavailable(text),
        CallError::Lost(text) => ProcessorError::Unknown(text),
    }
}

/// An error answer that is not a decline: Stripe's own failure (5xx, 429: it did not act, or
/// may have — callers of writes say which) or our request or key is wrong (4xx: a 500 for us,
/// logged with Stripe's request id).
fn answer_error(status: u16, sent: &Sent) -> ProcessorError {
    if status == 429 || status >= 500 {
        ProcessorError::Unavailable(format!("stripe answered {status}"))
    } else {
        ProcessorError::Rejected(format!(
            "stripe answered {status} {} (request {})",
            sent.body["error"]["code"].as_str().unwrap_or(""),
            sent.request_id
        ))
    }
}

/// Stripe's decline (an error object, or an intent's `last_payment_error`) as our failure.
/// Why a payment never approved failed when Stripe canceled its intent (abandoned there, or
/// canceled by reconciliation before a late confirm could charge).
fn canceled() -> Failure {
    Failure {
        code: "canceled".to_owned(),
        message: "The payment was canceled at the processor.".to_owned(),
    }
}

fn failure(error: &Value) -> Failure {
    let code = match error["code"].as_str() {
        Some("payment_intent_authentication_failure") => "authentication_failed",
        _ => error["decline_code"]
            .as_str()
            .or(error["code"].as_str())
            .unwrap_or("card_declined"),
    };
    Failure {
        code: code.to_owned(),
        message: error["message"]
            .as_str()
            .unwrap_or("The payment was declined.")
            .to_owned(),
    }
}

/// What an intent's state says about its authorization.
fn authorization(intent: &Value) -> Result<Authorization, ProcessorError> {
    Ok(match intent["status"].as_str().unwrap_or("") {
        "succeeded" | "requires_capture" => Authorization::Approved,
        "processing" => Authorization::Processing,
        "requires_action" => Authorization::RequiresAction(next_action(intent)),
        "requires_payment_method" => {
            Authorization::Declined(failure(&intent["last_payment_error"]))
        }
        "canceled" => Authorization::Declined(canceled()),
        other => {
            return Err(ProcessorError::Rejected(format!(
                "a PaymentIntent in state {other:?} after its confirmation"
            )))
        }
    })
}

fn next_action(intent: &Value) -> NextAction {
    let action = &intent["next_action"];
    match (
        action["type"].as_str(),
        action["redirect_to_url"]["url"].as_str(),
    ) {
        (Some("redirect_to_url"), Some(url)) => NextAction::RedirectToUrl {
            redirect_to_url: RedirectToUrl {
                url: url.to_owned(),
                return_url: action["redirect_to_url"]["return_url"]
                    .as_str()
                    .and_then(|u| ReturnUrl::parse(u, true).ok()),
            },
        },
        _ => NextAction::UseStripeSdk {
            client_secret: intent["client_secret"].as_str().unwrap_or("").to_owned(),
        },
    }
}

fn refund_status(refund: &Value) -> RefundStatus {
    match refund["status"].as_str() {
        Some("succeeded") => RefundStatus::Succeeded,
        Some("failed") | Some("canceled") => RefundStatus::Failed,
        _ => RefundStatus::Pending,
    }
}

fn amount_of(value: &Value) -> Option<Amount> {
    value.as_i64().and_then(|v| Amount::parse(v).ok())
}

#[async_trait]
impl PaymentProcessor for StripeProcessor {
    fn name(&self) -> ProcessorName {
        ProcessorName::Stripe
    }

    fn creates_references(&self) -> bool {
        true
    }

    /// Creates the PaymentIntent unconfirmed, with our ids in its metadata: no money moves
    /// until [`PaymentProcessor::authorize`] confirms it, and by then its id is stored.
    async fn prepare(&self, request: &AuthorizationRequest) -> Result<String, ProcessorError> {
        let capture_method = match request.capture_method {
            CaptureMethod::Automatic => "automatic",
            CaptureMethod::Manual => "manual",
        };
        let create = Form::new()
            .field("amount", request.amount.minor_units())
            .field("currency", request.currency.code().to_ascii_lowercase())
            .field("payment_method", &request.payment_method)
            .field("payment_method_types[0]", "card")
            .field("capture_method", capture_method)
            .nested("metadata", "payment_id", &request.payment)
            .nested("metadata", "merchant_id", &request.merchant);
        let key = format!("{}-create", request.payment);
        let created = self
            .call(Method::POST, "/v1/payment_intents", Some(&key), create)
            .await
            // An unconfirmed intent moves no money: a lost create is safe to retry.
            .map_err(read_error)?;
        let reference = match created.status {
            200 => created.body["id"]
                .as_str()
                .ok_or_else(|| ProcessorError::Rejected("a PaymentIntent without id".into()))?
                .to_owned(),
            404 => return Err(ProcessorError::UnknownPaymentMethod),
            400 if created.body["error"]["param"] == "payment_method" => {
                return Err(ProcessorError::UnknownPaymentMethod)
            }
            status => return Err(answer_error(status, &created)),
        };
        Ok(reference)
    }

    /// Confirms the PaymentIntent `reference`. A repeat (the first answer was lost) is refused
    /// by Stripe as confirmed already, and the intent then says how it went.
    async fn authorize(
        &self,
        request: &AuthorizationRequest,
        reference: &str,
    ) -> Result<Authorization, ProcessorError> {
        let key = format!("{}-confirm", request.payment);
        let path = format!("/v1/payment_intents/{reference}/confirm");
        let outcome = match self
            .call(Method::POST, &path, Some(&key), Form::new())
            .await
        {
            Ok(sent) if sent.status == 200 => authorization(&sent.body)?,
            Ok(sent) if sent.status == 402 => Authorization::Declined(failure(&sent.body["error"])),
            // Confirmed already (a retry whose first answer was lost): the intent says how.
            Ok(sent) if sent.status == 400 => {
                let intent = self.retrieve(reference).await?;
                if intent["status"] == "requires_confirmation" {
                    return Err(answer_error(400, &sent));
                }
                authorization(&intent)?
            }
            Ok(sent) if sent.status == 429 || sent.status >= 500 => Authorization::Unknown,
            Ok(sent) => return Err(answer_error(sent.status, &sent)),
            // The intent exists, unconfirmed; nothing moved.
            Err(CallError::NotSent(text)) => return Err(ProcessorError::Unavailable(text)),
            Err(CallError::Lost(_)) => Authorization::Unknown,
        };
        Ok(outcome)
    }

    async fn lookup(&self, reference: &str) -> Result<Lookup, ProcessorError> {
        let mut intent = self.retrieve(reference).await?;
        if intent["status"] == "requires_confirmation" {
            // Our confirm never reached Stripe: cancel, so that none can charge later.
            match self.cancel(reference).await {
                Ok(()) | Err(ProcessorError::Refused(_)) => {
                    intent = self.retrieve(reference).await?
                }
                Err(err) => return Err(err),
            }
        }
        Ok(match intent["status"].as_str().unwrap_or("") {
            "processing" | "requires_action" => Lookup::Pending,
            _ => match authorization(&intent)? {
                Authorization::Approved => Lookup::Settled(Settlement::Approved),
                Authorization::Declined(failure) => Lookup::Settled(Settlement::Declined(failure)),
                _ => Lookup::Pending,
            },
        })
    }

    async fn capture(&self, reference: &str, amount: Amount) -> Result<(), ProcessorError> {
        let path = format!("/v1/payment_intents/{reference}/capture");
        let key = format!("{reference}-capture");
        let form = Form::new().field("amount_to_capture", amount.minor_units());
        let sent = self
            .call(Method::POST, &path, Some(&key), form)
            .await
            .map_err(write_error)?;
        match sent.status {
            // The intent it answers with says what happened (localstripe answers 200 to a
            // capture of a canceled intent and leaves it canceled).
            200 if sent.body["status"] == "canceled" => {
                Err(ProcessorError::Refused("canceled at Stripe".into()))
            }
            200 => Ok(()),
            400 => match self.held(reference).await? {
                Held::Captured(captured) if captured == amount => Ok(()),
                Held::Canceled => Err(ProcessorError::Refused("canceled at Stripe".into())),
                _ => Err(answer_error(400, &sent)),
            },
            status if status == 429 || status >= 500 => {
                Err(ProcessorError::Unknown(format!("stripe answered {status}")))
            }
            status => Err(answer_error(status, &sent)),
        }
    }

    async fn cancel(&self, reference: &str) -> Result<(), ProcessorError> {
        let path = format!("/v1/payment_intents/{reference}/cancel");
        let key = format!("{reference}-cancel");
        let sent = self
            .call(Method::POST, &path, Some(&key), Form::new())
            .await
            .map_err(write_error)?;
        match sent.status {
            200 => Ok(()),
            400 => match self.held(reference).await? {
                Held::Canceled => Ok(()),
                Held::Captured(_) => Err(ProcessorError::Refused("captured at Stripe".into())),
                _ => Err(answer_error(400, &sent)),
            },
            status if status == 429 || status >= 500 => {
                Err(ProcessorError::Unknown(format!("stripe answered {status}")))
            }
            status => Err(answer_error(status, &sent)),
        }
    }

    async fn refund(&self, call: &RefundCall) -> Result<RefundStatus, ProcessorError> {
        let listed = self
            .call(
                Method::GET,
                "/v1/refunds",
                None,
                Form::new()
                    .field("payment_intent", &call.reference)
                    .field("limit", 100),
            )
            .await
            .map_err(read_error)?;
        if listed.status != 200 {
            return Err(answer_error(listed.status, &listed));
        }
        let ours = listed.body["data"].as_array().and_then(|refunds| {
            refunds
                .iter()
                .find(|r| r["metadata"]["refund_id"] == call.refund.as_str())
        });
        if let Some(existing) = ours {
            return Ok(refund_status(existing));
        }
        let mut form = Form::new()
            .field("payment_intent", &call.reference)
            .field("amount", call.amount.minor_units())
            .nested("metadata", "refund_id", &call.refund)
            .nested("metadata", "payment_id", &call.payment)
            .nested("metadata", "merchant_id", &call.merchant);
        if let Some(reason) = call.reason {
            let reason = match reason {
                RefundReason::Duplicate => "duplicate",
                RefundReason::Fraudulent => "fraudulent",
                RefundReason::RequestedByCustomer => "requested_by_customer",
            };
            form = form.nested("metadata", "reason", reason);
        }
        let key = call.refund.to_string();
        let sent = self
            .call(Method::POST, "/v1/refunds", Some(&key), form)
            .await
            .map_err(write_error)?;
        match sent.status {
            200 => Ok(refund_status(&sent.body)),
            status if status == 429 || status >= 500 => {
                Err(ProcessorError::Unknown(format!("stripe answered {status}")))
            }
            status => Err(answer_error(status, &sent)),
        }
    }

    async fn held(&self, reference: &str) -> Result<Held, ProcessorError> {
        let intent = match self.retrieve(reference).await {
            Ok(intent) => intent,
            Err(ProcessorError::Rejected(_)) => return Ok(Held::NotFound),
            Err(err) => return Err(err),
        };
        Ok(match intent["status"].as_str().unwrap_or("") {
            "requires_capture" => Held::Authorized,
            "succeeded" => Held::Captured(match amount_of(&intent["amount_received"]) {
                Some(received) => received,
                None => self.captured_by_charge(reference).await?,
            }),
            "canceled" => Held::Canceled,
            "processing" | "requires_action" => Held::Pending,
            _ => Held::NotFound,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn intent_states_map_to_our_outcomes() {
        assert_eq!(
            authorization(&json!({"status": "succeeded"})).unwrap(),
            Authorization::Approved
        );
        assert_eq!(
            authorization(&json!({"status": "requires_capture"})).unwrap(),
            Authorization::Approved
        );
        assert_eq!(
            authorization(&json!({"status": "processing"})).unwrap(),
            Authorization::Processing
        );
        assert_eq!(
            authorization(
                &json!({"status": "requires_action", "client_secret": "pi_1_secret_x",
                "next_action": {"type": "use_stripe_sdk"}})
            )
            .unwrap(),
            Authorization::RequiresAction(NextAction::UseStripeSdk {
                client_secret: "pi_1_secret_x".into()
            })
        );
        assert_eq!(
            authorization(&json!({"status": "requires_action", "next_action": {
                "type": "redirect_to_url",
                "redirect_to_url": {"url": "https://hooks.stripe.com/3ds", "return_url": null}}}))
            .unwrap(),
            Authorization::RequiresAction(NextAction::RedirectToUrl {
                redirect_to_url: RedirectToUrl {
                    url: "https://hooks.stripe.com/3ds".into(),
                    return_url: None
                }
            })
        );
        assert!(authorization(&json!({"status": "requires_confirmation"})).is_err());
    }

    #[test]
    fn declines_keep_stripes_most_specific_code() {
        let declined = failure(&json!({"code": "card_declined",
            "decline_code": "insufficient_funds", "message": "Your card has insufficient funds."}));
        assert_eq!(declined.code, "insufficient_funds");
        assert_eq!(declined.message, "Your card has insufficient funds.");
        assert_eq!(
            failure(&json!({"code": "card_declined", "message": "m"})).code,
            "card_declined"
        );
        assert_eq!(
            failure(&json!({"code": "payment_intent_authentication_failure"})).code,
            "authentication_failed"
        );
        assert_eq!(
            authorization(&json!({"status": "requires_payment_method",
                "last_payment_error": {"code": "expired_card", "message": "m"}}))
            .unwrap(),
            Authorization::Declined(Failure {
                code: "expired_card".into(),
                message: "m".into()
            })
        );
    }

    #[test]
    fn refund_states_map_to_ours() {
        for (stripe, ours) in [
            ("succeeded", RefundStatus::Succeeded),
            ("pending", RefundStatus::Pending),
            ("requires_action", RefundStatus::Pending),
            ("failed", RefundStatus::Failed),
            ("canceled", RefundStatus::Failed),
        ] {
            assert_eq!(refund_status(&json!({"status": stripe})), ours, "{stripe}");
        }
    }

    #[test]
    fn the_secret_key_is_never_printed() {
        let stripe = StripeProcessor::new(
            "https://api.stripe.com/",
            keys::Keys::given(keys::StripeKeys {
                secret_key: "sk_live_secret".into(),
                webhook_secret: "whsec_live_secret".into(),
            }),
        );
        let printed = format!("{stripe:?}");
        assert!(!printed.contains("_live_"), "{printed}");
        assert!(printed.contains("https://api.stripe.com\""), "{printed}");
    }
}
