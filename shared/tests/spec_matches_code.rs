//! Where openapi.yaml describes a value, the code must accept exactly what it describes: a
//! schema-valid request that the code refuses (or the reverse) is a broken promise to every
//! client generated from the spec. Schemathesis finds such gaps by sampling; these tests close
//! the ones that can be checked whole.

use serde_norway::Value as Yaml;
use shared::domain::{Amount, CancellationReason, CaptureMethod, Currency, MerchantId, PaymentId};
use shared::processor::{AuthorizationRequest, PaymentProcessor, ProcessorError};
use shared::testing::{workspace_root, TestApp};
use std::collections::BTreeSet;

fn spec() -> Yaml {
    let text = std::fs::read_to_string(workspace_root().join("openapi.yaml")).expect("read spec");
    serde_norway::from_str(&text).expect("parse spec")
}

/// Every three-letter code `Currency::parse` accepts (uppercase).
fn accepted_currencies() -> BTreeSet<String> {
    let letters = b'A'..=b'Z';
    let mut accepted = BTreeSet::new();
    for a in letters.clone() {
        for b in letters.clone() {
            for c in letters.clone() {
                let code = String::from_utf8(vec![a, b, c]).expect("ASCII");
                if Currency::parse(&code).is_ok() {
                    accepted.insert(code);
                }
            }
        }
    }
    accepted
}

/// The case-insensitive pattern that matches exactly `codes`: `^(?:[Uu][Ss][Dd]|…)$`.
fn pattern_of(codes: &BTreeSet<String>) -> String {
    let alternatives: Vec<String> = codes
        .iter()
        .map(|code| {
            code.chars()
                .map(|c| format!("[{c}{}]", c.to_ascii_lowercase()))
                .collect()
        })
        .collect();
    format!("^(?:{})$", alternatives.join("|"))
}

#[test]
fn the_currency_schema_is_exactly_the_accepted_codes() {
    let accepted = accepted_currencies();
    assert!(accepted.contains("USD") && accepted.contains("JPY") && accepted.contains("KWD"));
    assert!(!accepted.contains("AAA") && !accepted.contains("XAU") && !accepted.contains("HRK"));
    let expected = pattern_of(&accepted);
    let schema = &spec()["components"]["schemas"]["Currency"];
    assert_eq!(
        schema["pattern"].as_str(),
        Some(expected.as_str()),
        "openapi.yaml's Currency pattern must be exactly (regenerate it from this):\n{expected}"
    );
    // Case-insensitive in, as the contract says: every spelling the pattern allows parses.
    assert!(Currency::parse("usd").is_ok() && Currency::parse("uSd").is_ok());
}

#[tokio::test]
async fn the_payment_method_enum_is_exactly_the_sandbox_tokens() {
    let schema = &spec()["components"]["schemas"]["CreatePaymentRequest"]["properties"]
        ["payment_method"]["enum"];
    let tokens: Vec<String> = schema
        .as_sequence()
        .expect("payment_method has an enum")
        .iter()
        .map(|v| v.as_str().expect("token").to_owned())
        .collect();
    assert_eq!(tokens.len(), 9);
    // The sandbox records the tokens whose outcome comes later in the table.
    let t = TestApp::new().await;
    let sandbox = &t.sandbox;
    let now = time::OffsetDateTime::now_utc();
    let authorize = |token: &str| AuthorizationRequest {
        payment: PaymentId::generate(now),
        merchant: MerchantId::generate(now),
        payment_method: token.to_owned(),
        amount: Amount::parse(100).unwrap(),
        currency: Currency::parse("USD").unwrap(),
        capture_method: CaptureMethod::Automatic,
        return_url: None,
        api_base: "https://api.example".into(),
    };
    let sandbox_authorize = |request: AuthorizationRequest| async move {
        let reference = sandbox.prepare(&request).await?;
        sandbox.authorize(&request, &reference).await
    };
    for token in &tokens {
        assert!(sandbox_authorize(authorize(token)).await.is_ok(), "{token}");
    }
    for other in ["", "pm_card_visa ", "pm_card_unknown", "PM_CARD_VISA"] {
        assert!(
            matches!(
                sandbox_authorize(authorize(other)).await,
                Err(ProcessorError::UnknownPaymentMethod)
            ),
            "{other:?}"
        );
    }
}

/// Stateful testing can only reach an operation on a real payment through a link: every
/// operation with a payment `{id}` is linked from `POST /payments`'s 201.
#[test]
fn every_payment_operation_is_linked_from_create() {
    let spec = spec();
    let mut with_id = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().expect("paths") {
        if !path
            .as_str()
            .unwrap_or_default()
            .starts_with("/payments/{id}")
        {
            continue;
        }
        for (_, operation) in item.as_mapping().expect("path item") {
            if let Some(id) = operation["operationId"].as_str() {
                with_id.insert(id.to_owned());
            }
        }
    }
    let links = &spec["paths"]["/payments"]["post"]["responses"]["201"]["links"];
    let linked: BTreeSet<String> = links
        .as_mapping()
        .expect("links on 201")
        .values()
        .map(|link| {
            assert_eq!(
                link["parameters"]["id"].as_str(),
                Some("$response.body#/id")
            );
            link["operationId"]
                .as_str()
                .expect("operationId")
                .to_owned()
        })
        .collect();
    assert_eq!(linked, with_id);
}

/// A client may send every cancellation reason but `expired` (the system's own); a payment may
/// show any of them. Both enums in the spec say exactly that.
#[test]
fn cancellation_reasons_are_the_clients_in_and_all_of_them_out() {
    let strings = |enumeration: &Yaml| -> BTreeSet<String> {
        enumeration
            .as_sequence()
            .expect("an enum")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let spec = spec();
    let request = strings(
        &spec["paths"]["/payments/{id}/cancel"]["post"]["requestBody"]["content"]
            ["application/json"]["schema"]["properties"]["cancellation_reason"]["enum"],
    );
    let shown = strings(
        &spec["components"]["schemas"]["Payment"]["properties"]["cancellation_reason"]["enum"],
    );
    for reason in &request {
        let parsed = CancellationReason::parse(reason).expect("a documented reason parses");
        assert_eq!(serde_json::to_value(parsed).unwrap(), reason.as_str());
    }
    assert!(CancellationReason::parse("expired").is_err());
    let mut all = request.clone();
    all.insert("expired".to_owned());
    assert_eq!(shown, all);
    assert_eq!(
        serde_json::to_value(CancellationReason::Expired).unwrap(),
        "expired"
    );
}

/// An event is reached from the lists that show it, and the event types are the code's.
#[test]
fn events_are_linked_from_their_lists_and_typed_as_the_code_types_them() {
    let spec = spec();
    for (path, operation) in [
        ("/payments/{id}/events", "listEvents"),
        ("/events", "listMerchantEvents"),
    ] {
        let get = &spec["paths"][path]["get"];
        assert_eq!(get["operationId"].as_str(), Some(operation));
        let link = &get["responses"]["200"]["links"]["GetFirstEvent"];
        assert_eq!(link["operationId"].as_str(), Some("getEvent"), "{path}");
        assert_eq!(
            link["parameters"]["id"].as_str(),
            Some("$response.body#/data/0/id")
        );
    }
    let documented: Vec<String> = spec["components"]["schemas"]["EventType"]["enum"]
        .as_sequence()
        .expect("EventType enum")
        .iter()
        .map(|v| v.as_str().expect("a type").to_owned())
        .collect();
    let code: Vec<String> = shared::domain::EventType::ALL
        .iter()
        .map(|kind| kind.as_str().to_owned())
        .collect();
    assert_eq!(documented, code);
}

/// Every webhook endpoint operation is reached from the create's 201, as the payment ones are
/// from a payment's.
#[test]
fn every_webhook_endpoint_operation_is_linked_from_create() {
    let spec = spec();
    let mut with_id = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().expect("paths") {
        let path = path.as_str().unwrap_or_default();
        // An operation on one of the endpoint's deliveries or replays needs that id too: it is
        // linked from the delivery list or the replay's create instead (below).
        if path.starts_with("/webhook_endpoints/{id}")
            && !path.contains("{delivery_id}")
            && !path.contains("{replay_id}")
        {
            for (_, operation) in item.as_mapping().expect("path item") {
                if let Some(id) = operation["operationId"].as_str() {
                    with_id.insert(id.to_owned());
                }
            }
        }
    }
    let links = &spec["paths"]["/webhook_endpoints"]["post"]["responses"]["201"]["links"];
    let linked: BTreeSet<String> = links
        .as_mapping()
        .expect("links on 201")
        .values()
        .map(|link| {
            link["operationId"]
                .as_str()
                .expect("operationId")
                .to_owned()
        })
        .collect();
    assert!(!with_id.is_empty());
    assert_eq!(linked, with_id);

    let from_list = &spec["paths"]["/webhook_endpoints/{id}/deliveries"]["get"]["responses"]["200"]
        ["links"]["ResendWebhookDelivery"];
    assert_eq!(
        from_list["operationId"].as_str(),
        Some("resendWebhookDelivery")
    );
    assert_eq!(
        from_list["parameters"]["delivery_id"].as_str(),
        Some("$response.body#/data/0/id")
    );

    let from_replay = &spec["paths"]["/webhook_endpoints/{id}/replay"]["post"]["responses"]["202"]
        ["links"]["GetWebhookReplay"];
    assert_eq!(
        from_replay["operationId"].as_str(),
        Some("getWebhookReplay")
    );
    assert_eq!(
        from_replay["parameters"]["replay_id"].as_str(),
        Some("$response.body#/id")
    );
}

/// The delivery statuses of the spec are exactly the code's.
#[test]
fn delivery_statuses_are_the_codes() {
    let spec = spec();
    let documented: Vec<String> = spec["components"]["schemas"]["DeliveryStatus"]["enum"]
        .as_sequence()
        .expect("DeliveryStatus enum")
        .iter()
        .map(|v| v.as_str().expect("a status").to_owned())
        .collect();
    let code: Vec<String> = shared::webhooks::delivery::DeliveryStatus::ALL
        .iter()
        .map(|status| status.as_str().to_owned())
        .collect();
    assert_eq!(documented, code);
}
