//! The files that describe the API to different tools must agree:
//! - the routes `template.yaml` deploys, the routes `cargo lambda watch` serves locally (the
//!   router in Cargo.toml) and the operations `openapi.yaml` documents;
//! - the table `template.yaml` deploys and the one the local stack and tests create
//!   (`shared::store::schema::TABLE`).

use serde_norway::Value as Yaml;
use shared::store::schema::{IndexProjection, TABLE};
use shared::testing::workspace_root;
use std::collections::BTreeSet;

fn yaml(name: &str) -> Yaml {
    let text = std::fs::read_to_string(workspace_root().join(name)).expect("read yaml");
    serde_norway::from_str(&text).expect("parse yaml")
}

fn str_of(value: &Yaml) -> String {
    value
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("not a string: {value:?}"))
}

/// (function package, its resource) for every function in the template.
fn template_functions() -> Vec<(String, Yaml)> {
    let template = yaml("template.yaml");
    let mut functions = Vec::new();
    for (_, resource) in template["Resources"].as_mapping().expect("Resources") {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let code_uri = str_of(&resource["Properties"]["CodeUri"]);
        let package = code_uri
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        functions.push((package, resource.clone()));
    }
    functions
}

/// (METHOD, path, function package) for every HttpApi event in the template.
fn template_routes() -> BTreeSet<(String, String, String)> {
    let mut routes = BTreeSet::new();
    for (package, resource) in template_functions() {
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for (_, event) in events {
            if event["Type"].as_str() == Some("HttpApi") {
                let method = str_of(&event["Properties"]["Method"]).to_uppercase();
                let path = str_of(&event["Properties"]["Path"]);
                routes.insert((method, path, package.clone()));
            }
        }
    }
    routes
}

/// (METHOD, path, function package) from `[workspace.metadata.lambda.watch.router]`.
fn watch_routes() -> BTreeSet<(String, String, String)> {
    let text = std::fs::read_to_string(workspace_root().join("Cargo.toml")).expect("Cargo.toml");
    let manifest: toml::Table = toml::from_str(&text).expect("parse Cargo.toml");
    let router = manifest["workspace"]["metadata"]["lambda"]["watch"]["router"]
        .as_table()
        .expect("watch router");
    let mut routes = BTreeSet::new();
    for (path, entries) in router {
        for entry in entries.as_array().expect("router entries are arrays") {
            let method = entry["method"].as_str().expect("method").to_uppercase();
            let function = entry["function"].as_str().expect("function").to_owned();
            routes.insert((method, path.clone(), function));
        }
    }
    routes
}

/// (METHOD, path) of every operation in openapi.yaml.
fn openapi_operations() -> BTreeSet<(String, String)> {
    let spec = yaml("openapi.yaml");
    let mut operations = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().expect("paths") {
        for (method, _) in item.as_mapping().expect("path item") {
            let method = str_of(method);
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                operations.insert((method.to_uppercase(), str_of(path)));
            }
        }
    }
    operations
}

#[test]
fn template_router_and_openapi_describe_the_same_routes() {
    let template = template_routes();
    assert!(
        !template.is_empty(),
        "no HttpApi routes found in template.yaml"
    );
    assert_eq!(
        template,
        watch_routes(),
        "template.yaml and the cargo lambda watch router differ"
    );
    let documented: BTreeSet<(String, String)> = template
        .iter()
        .map(|(method, path, _)| (method.clone(), path.clone()))
        .collect();
    assert_eq!(
        documented,
        openapi_operations(),
        "template.yaml and openapi.yaml differ"
    );
}

/// SAM deploys exactly what `make build` made: every function's `CodeUri` is its prebuilt
/// folder (`build/lambda/<package>`, where infra/build.sh's one `cargo lambda build` puts each
/// `bootstrap`), and no function has a `BuildMethod`, which would make `sam build` compile it
/// again, one function after another.
#[test]
fn every_function_is_deployed_from_its_prebuilt_artifact() {
    let build_script =
        std::fs::read_to_string(workspace_root().join("infra/build.sh")).expect("infra/build.sh");
    assert!(
        build_script.contains("lambda_dir=build/lambda\n"),
        "infra/build.sh builds into build/lambda"
    );
    for (package, resource) in template_functions() {
        assert_eq!(
            str_of(&resource["Properties"]["CodeUri"]).trim_end_matches('/'),
            format!("build/lambda/{package}"),
            "{package}: CodeUri"
        );
        assert!(
            resource["Metadata"]["BuildMethod"].is_null(),
            "{package}: a BuildMethod makes sam build compile it again"
        );
    }
}

/// Every package in functions/ is deployed, and each has a sample event of its trigger in
/// events/ (an API Gateway request, or the schedule's payload) for tests and `cargo lambda
/// invoke --data-file`.
#[test]
fn every_function_package_is_deployed_and_every_route_has_a_sample_event() {
    let packages: BTreeSet<String> = template_functions().into_iter().map(|(p, _)| p).collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(workspace_root().join("functions"))
        .expect("functions/")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(packages, on_disk, "functions/ and template.yaml differ");
    for package in &packages {
        let event = workspace_root()
            .join("events")
            .join(format!("{package}.json"));
        assert!(event.is_file(), "missing sample event {}", event.display());
    }
}

#[test]
fn deployed_table_matches_the_shared_definition() {
    let template = yaml("template.yaml");
    let table = &template["Resources"]["PaymentsTable"]["Properties"];
    assert_eq!(table["BillingMode"].as_str(), Some("PAY_PER_REQUEST"));

    let key_schema = |schema: &Yaml| -> (String, String) {
        let elements = schema.as_sequence().expect("KeySchema");
        let find = |kind: &str| {
            elements
                .iter()
                .find(|e| e["KeyType"].as_str() == Some(kind))
                .map(|e| str_of(&e["AttributeName"]))
                .unwrap_or_default()
        };
        (find("HASH"), find("RANGE"))
    };
    assert_eq!(
        key_schema(&table["KeySchema"]),
        (TABLE.key.partition.to_owned(), TABLE.key.sort.to_owned())
    );

    let defined: BTreeSet<(String, String)> = table["AttributeDefinitions"]
        .as_sequence()
        .expect("AttributeDefinitions")
        .iter()
        .map(|d| (str_of(&d["AttributeName"]), str_of(&d["AttributeType"])))
        .collect();
    let expected: BTreeSet<(String, String)> = TABLE
        .key_attributes()
        .into_iter()
        .map(|a| (a.to_owned(), "S".to_owned()))
        .collect();
    assert_eq!(defined, expected);

    type Index = (String, (String, String), String, Vec<String>);
    let indexes: BTreeSet<Index> = table["GlobalSecondaryIndexes"]
        .as_sequence()
        .expect("GlobalSecondaryIndexes")
        .iter()
        .map(|i| {
            let included = i["Projection"]["NonKeyAttributes"]
                .as_sequence()
                .map(|names| names.iter().map(str_of).collect())
                .unwrap_or_default();
            (
                str_of(&i["IndexName"]),
                key_schema(&i["KeySchema"]),
                str_of(&i["Projection"]["ProjectionType"]),
                included,
            )
        })
        .collect();
    let expected: BTreeSet<Index> = TABLE
        .indexes
        .iter()
        .map(|i| {
            let (projection, included) = match i.projection {
                IndexProjection::All => ("ALL", Vec::new()),
                IndexProjection::Include(names) => {
                    ("INCLUDE", names.iter().map(|n| (*n).to_owned()).collect())
                }
            };
            (
                i.name.to_owned(),
                (i.key.partition.to_owned(), i.key.sort.to_owned()),
                projection.to_owned(),
                included,
            )
        })
        .collect();
    assert_eq!(indexes, expected);

    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some(TABLE.ttl_attribute)
    );
    assert_eq!(
        table["TimeToLiveSpecification"]["Enabled"].as_bool(),
        Some(true)
    );
    assert_eq!(
        table["StreamSpecification"]["StreamViewType"].as_str(),
        Some(TABLE.stream_view),
        "the webhook relay reads new events from the table's stream"
    );
}

#[tokio::test]
async fn the_local_table_is_created_from_the_shared_definition() {
    // Made (create_table_if_missing answered true), and deleted when the test ends.
    let made =
        shared::testing::TestTable::create_named(format!("payments-shape-{}", uuid_like())).await;
    let (client, name) = (made.client(), made.name().to_owned());
    assert!(
        !shared::store::schema::create_table_if_missing(&client, &name)
            .await
            .unwrap()
    );
    let described = client
        .describe_table()
        .table_name(&name)
        .send()
        .await
        .unwrap();
    let table = described.table.unwrap();
    let mut index_names: Vec<String> = table
        .global_secondary_indexes()
        .iter()
        .filter_map(|i| i.index_name().map(str::to_owned))
        .collect();
    index_names.sort();
    let expected: Vec<String> = TABLE.indexes.iter().map(|i| i.name.to_owned()).collect();
    assert_eq!(index_names, expected);
    for index in TABLE.indexes {
        let described = table
            .global_secondary_indexes()
            .iter()
            .find(|i| i.index_name() == Some(index.name))
            .and_then(|i| i.projection())
            .expect("a projection");
        let included: Vec<&str> = described
            .non_key_attributes()
            .iter()
            .map(String::as_str)
            .collect();
        match index.projection {
            IndexProjection::All => {
                assert_eq!(described.projection_type().map(|t| t.as_str()), Some("ALL"))
            }
            IndexProjection::Include(names) => {
                assert_eq!(
                    described.projection_type().map(|t| t.as_str()),
                    Some("INCLUDE")
                );
                assert_eq!(included, names, "{}", index.name);
            }
        }
    }
    let stream = table.stream_specification().expect("a stream");
    assert!(stream.stream_enabled());
    assert_eq!(
        stream.stream_view_type().map(|v| v.as_str()),
        Some(TABLE.stream_view)
    );
    let ttl = client
        .describe_time_to_live()
        .table_name(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description()
            .and_then(|d| d.attribute_name()),
        Some(TABLE.ttl_attribute)
    );
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Webhook signing secrets (the `WHSECRET#` partitions, `shared::store::webhooks`) are read by
/// the dispatcher alone, the one function that signs: every other function with DynamoDB
/// access carries the Deny policy, which refuses any read whose leading key is a secret's —
/// the relay too, which only creates deliveries.
#[test]
fn only_the_dispatcher_may_read_webhook_secrets() {
    assert_reads_denied_but_to(
        "WebhookSecretsUnreadable",
        "WHSECRET#*",
        &["retry-webhook-deliveries"],
    );
}

/// The functions that list, and so sign and open cursors (`store::cursor_secret`).
const LIST_FUNCTIONS: [&str; 6] = [
    "list-payments",
    "list-refunds",
    "list-events",
    "list-merchant-events",
    "list-webhook-endpoints",
    "list-webhook-deliveries",
];

/// The sandbox signs its events (`sandbox-authenticate`, `sandbox-settle`) and the processor-event route verifies
/// them: no other function may read the secret that would let it forge one.
#[test]
fn only_the_sandbox_page_and_the_event_route_may_read_the_sandbox_secret() {
    assert_reads_denied_but_to(
        "SandboxSecretUnreadable",
        "SANDBOX_SECRET",
        &["processor-events", "sandbox-authenticate", "sandbox-settle"],
    );
}

#[test]
fn only_the_list_functions_may_read_the_cursor_secret() {
    assert_reads_denied_but_to("CursorSecretUnreadable", "CURSOR_SECRET", &LIST_FUNCTIONS);
}

/// `policy` is a Deny of every read of the partitions `prefix` matches, attached to every
/// function with DynamoDB access except `exempt`.
fn assert_reads_denied_but_to(policy: &str, prefix: &str, exempt: &[&str]) {
    let template = yaml("template.yaml");
    let statement = &template["Resources"][policy]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(statement["Effect"].as_str(), Some("Deny"), "{policy}");
    let actions: BTreeSet<String> = statement["Action"]
        .as_sequence()
        .expect("actions")
        .iter()
        .map(str_of)
        .collect();
    for read in [
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
    ] {
        assert!(actions.contains(read), "{policy}: {read} is not denied");
    }
    let prefixes = &statement["Condition"]["ForAnyValue:StringLike"]["dynamodb:LeadingKeys"];
    assert_eq!(
        prefixes
            .as_sequence()
            .map(|p| p.iter().map(str_of).collect::<Vec<_>>()),
        Some(vec![prefix.to_owned()]),
        "{policy}"
    );

    let mut checked = 0;
    for (package, resource) in template_functions() {
        let policies = resource["Properties"]["Policies"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        if policies.is_empty() {
            continue; // no DynamoDB access at all (health)
        }
        let denied = policies.iter().any(|attached| match attached {
            Yaml::Tagged(tagged) => tagged.tag == "Ref" && tagged.value.as_str() == Some(policy),
            _ => false,
        });
        assert_eq!(
            denied,
            !exempt.contains(&package.as_str()),
            "{package}: {policy} must be on every function but {exempt:?}"
        );
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} functions checked");
}

/// Secrets are read at run time by the functions that need them, never handed over in the
/// environment, where `lambda:GetFunctionConfiguration` shows them to anyone allowed it.
#[test]
fn no_function_environment_holds_a_secret() {
    let template = yaml("template.yaml");
    let mut environments = vec![(
        "Globals".to_owned(),
        template["Globals"]["Function"]["Environment"]["Variables"].clone(),
    )];
    for (package, resource) in template_functions() {
        environments.push((
            package,
            resource["Properties"]["Environment"]["Variables"].clone(),
        ));
    }
    let mut variables = 0;
    for (owner, environment) in environments {
        let Some(map) = environment.as_mapping() else {
            continue;
        };
        for (name, value) in map {
            variables += 1;
            let name = str_of(name);
            if name == "STRIPE_SECRET_ARN" {
                // Where the Stripe keys live, not the keys: the functions read the secret
                // itself on first use (only those `StripeKeysReadable` lets).
                assert_eq!(
                    format!("{value:?}"),
                    format!("{:?}", stripe_secret_arn()),
                    "{owner}"
                );
                continue;
            }
            let text = format!("{value:?}");
            for marker in ["{{resolve:", "SecretsManager", "Secret", "ssm"] {
                assert!(!text.contains(marker), "{owner}: {name} = {text}");
            }
            for word in ["SECRET", "KEY", "TOKEN", "PASSWORD"] {
                assert!(!name.contains(word), "{owner}: {name} names a secret");
            }
        }
    }
    assert!(variables >= 5, "only {variables} variables seen");
}

/// `STRIPE_SECRET_ARN`'s one allowed value: the parameter, when the processor is Stripe.
fn stripe_secret_arn() -> Yaml {
    serde_norway::from_str(r#"!If [IsStripe, !Ref StripeSecretArn, ""]"#).expect("yaml")
}

/// The functions that call Stripe (their `main.rs` wires the deployment's processor) and the
/// route that verifies its webhooks may read the Stripe keys' secret, and no other: exactly
/// those carry `StripeKeysReadable` and are told where the secret is, and the policy grants
/// `GetSecretValue` on that one secret alone.
#[test]
fn only_the_functions_that_call_stripe_may_read_its_keys() {
    let template = yaml("template.yaml");
    let policy = &template["Resources"]["StripeKeysReadable"];
    assert_eq!(policy["Condition"].as_str(), Some("IsStripe"));
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .expect("statements");
    assert_eq!(statements.len(), 1);
    assert_eq!(statements[0]["Effect"].as_str(), Some("Allow"));
    assert_eq!(
        actions_of(&statements[0]),
        vec!["secretsmanager:GetSecretValue".to_owned()]
    );
    assert_eq!(
        format!("{:?}", statements[0]["Resource"]),
        format!(
            "{:?}",
            serde_norway::from_str::<Yaml>("!Ref StripeSecretArn").unwrap()
        )
    );

    let attached = serde_norway::from_str::<Yaml>(
        "!If [IsStripe, !Ref StripeKeysReadable, !Ref AWS::NoValue]",
    )
    .unwrap();
    let mut readers = BTreeSet::new();
    for (package, resource) in template_functions() {
        let policies = resource["Properties"]["Policies"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        let grants = policies.contains(&attached);
        let told = resource["Properties"]["Environment"]["Variables"]["STRIPE_SECRET_ARN"]
            == stripe_secret_arn();
        assert_eq!(
            grants, told,
            "{package}: grant and STRIPE_SECRET_ARN go together"
        );
        // Any other grant of Secrets Manager would be a second way in.
        for statement in allowed_statements(&resource) {
            assert!(
                !actions_of(&statement)
                    .iter()
                    .any(|a| a.starts_with("secretsmanager:")),
                "{package}: Secrets Manager only through StripeKeysReadable"
            );
        }
        if grants {
            readers.insert(package);
        }
    }
    let mut callers = BTreeSet::new();
    let functions = workspace_root().join("functions");
    for entry in std::fs::read_dir(&functions).expect("functions/") {
        let package = entry.expect("entry").file_name().into_string().unwrap();
        let main = std::fs::read_to_string(functions.join(&package).join("src/main.rs"))
            .unwrap_or_default();
        if main.contains("with_deployment_processor()")
            || main.contains("processor::from_env(")
            || main.contains("Verifier::from_env(")
        {
            callers.insert(package);
        }
    }
    assert!(callers.len() >= 7, "{callers:?}");
    assert_eq!(readers, callers);
}

/// Deletes are granted only where a function deletes: the endpoint's delete (endpoint and
/// secrets, in one transaction). Everything else changes items with conditional puts and
/// updates (an idempotency claim is released by an update), so a buggy or compromised function
/// cannot erase a payment's trail.
#[test]
fn only_delete_webhook_endpoint_may_delete_items() {
    for (package, resource) in template_functions() {
        let deletes = allowed_statements(&resource)
            .iter()
            .flat_map(actions_of)
            .any(|action| action == "dynamodb:DeleteItem");
        assert_eq!(
            deletes,
            package == "delete-webhook-endpoint",
            "{package}: DeleteItem only where the code deletes"
        );
    }
}

/// The `Allow` statements of a function's inline policies.
fn allowed_statements(resource: &Yaml) -> Vec<Yaml> {
    resource["Properties"]["Policies"]
        .as_sequence()
        .cloned()
        .unwrap_or_default()
        .iter()
        .flat_map(|policy| {
            policy["Statement"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|statement| statement["Effect"].as_str() == Some("Allow"))
        .collect()
}

/// A statement's actions (a list, or one).
fn actions_of(statement: &Yaml) -> Vec<String> {
    match &statement["Action"] {
        Yaml::Sequence(actions) => actions.iter().map(str_of).collect(),
        action => vec![str_of(action)],
    }
}

/// Every DynamoDB write grant of a function is limited by `dynamodb:LeadingKeys` to partitions
/// that function owns: payment, idempotency, endpoint and secret partitions, and the merchant's
/// own (`MERCHANT#mer_` and exactly an id's 32 characters: the endpoint counter). None can reach
/// an API key (`APIKEY#…`): only the admin CLI writes those.
#[test]
fn every_write_grant_is_limited_to_merchant_owned_partitions() {
    const WRITES: [&str; 4] = [
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
    ];
    let owned = |pattern: &str| {
        pattern == format!("MERCHANT#mer_{}", "?".repeat(32))
            || [
                "MERCHANT#*#PAYMENT#*",
                "MERCHANT#*#IDEMPOTENCY#*",
                "MERCHANT#*#WEBHOOK#*",
                "MERCHANT#*#RATE",
                "WHSECRET#*",
            ]
            .contains(&pattern)
    };
    // The sandbox processor's own records are not a merchant's: only the functions that run
    // processor calls may write them — create, capture, cancel and refund, the expiry sweeper
    // (which cancels at the processor first) and reconciliation, the sandbox's authentication
    // page and its settle sweep.
    let sandbox = |package: &str, pattern: &str| {
        pattern == "SANDBOX#*"
            && [
                "create-payment",
                "capture-payment",
                "cancel-payment",
                "create-refund",
                "expire-authorizations",
                "reconcile-payments",
                "sandbox-authenticate",
                "sandbox-settle",
            ]
            .contains(&package)
    };
    let mut grants = 0;
    for (package, resource) in template_functions() {
        let statements = allowed_statements(&resource);
        for statement in statements {
            let actions = actions_of(&statement);
            if !actions
                .iter()
                .any(|a| WRITES.contains(&a.as_str()) || a == "dynamodb:*")
            {
                continue;
            }
            grants += 1;
            let patterns = statement["Condition"]["ForAllValues:StringLike"]
                ["dynamodb:LeadingKeys"]
                .as_sequence()
                .unwrap_or_else(|| panic!("{package}: a write grant without LeadingKeys"))
                .iter()
                .map(str_of)
                .collect::<Vec<_>>();
            assert!(!patterns.is_empty(), "{package}");
            for pattern in &patterns {
                assert!(
                    owned(pattern) || sandbox(&package, pattern),
                    "{package}: {pattern} is not a merchant-owned partition"
                );
            }
        }
    }
    assert!(grants >= 11, "only {grants} write grants found");
}

/// The two functions that talk to endpoints merchants chose (the relay and the dispatcher) read
/// only the partitions they need: every grant of theirs that reads the table is limited by
/// `dynamodb:LeadingKeys` (the dispatcher: deliveries and endpoints, events, secrets), none
/// scans, and their Queries go to an index alone. So neither can read an API key, an
/// idempotency record or a merchant item, whatever a bug in them asks for.
#[test]
fn the_delivery_functions_read_only_the_partitions_they_need() {
    const READS: [&str; 4] = [
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "dynamodb:Scan",
    ];
    let needed = |package: &str| -> &'static [&'static str] {
        match package {
            "retry-webhook-deliveries" => {
                &["MERCHANT#*#WEBHOOK#*", "MERCHANT#*#PAYMENT#*", "WHSECRET#*"]
            }
            _ => &[],
        }
    };
    let mut checked = 0;
    for (package, resource) in template_functions() {
        if !["relay-webhook-events", "retry-webhook-deliveries"].contains(&package.as_str()) {
            continue;
        }
        for statement in allowed_statements(&resource) {
            let actions = actions_of(&statement);
            let reads: Vec<&String> = actions
                .iter()
                .filter(|a| READS.contains(&a.as_str()) || a.as_str() == "dynamodb:*")
                .collect();
            if reads.is_empty() {
                continue;
            }
            checked += 1;
            assert!(
                !reads
                    .iter()
                    .any(|a| a.as_str() == "dynamodb:Scan" || a.as_str() == "dynamodb:*"),
                "{package}: a scan (or every action) is a table-wide read"
            );
            let index_arn = |resource: &Yaml| match resource {
                Yaml::Tagged(tagged) => {
                    tagged.tag == "Sub" && str_of(&tagged.value).contains("/index/")
                }
                _ => false,
            };
            // One index ARN, or a list of them: never the table's.
            let on_index = match &statement["Resource"] {
                Yaml::Sequence(resources) => {
                    !resources.is_empty() && resources.iter().all(index_arn)
                }
                resource => index_arn(resource),
            };
            if reads.iter().any(|a| a.as_str() == "dynamodb:Query") {
                assert!(on_index, "{package}: a Query of the table itself");
                continue;
            }
            let patterns: Vec<String> = statement["Condition"]["ForAllValues:StringLike"]
                ["dynamodb:LeadingKeys"]
                .as_sequence()
                .unwrap_or_else(|| panic!("{package}: a table read without LeadingKeys"))
                .iter()
                .map(str_of)
                .collect();
            assert!(!patterns.is_empty(), "{package}");
            for pattern in &patterns {
                assert!(
                    needed(&package).contains(&pattern.as_str()),
                    "{package}: reads {pattern}, which it does not need"
                );
            }
        }
    }
    assert!(
        checked >= 3,
        "only {checked} read grants of the delivery functions found"
    );
}

/// The dashboard shows this stack's resources and metrics the functions really emit: every
/// `${Name}` in its body is a resource of the template, and every `PaymentsApi` metric (direct
/// or in a SEARCH) is one `shared::metrics` writes.
#[test]
fn the_dashboard_refers_to_this_stacks_resources_and_emitted_metrics() {
    let template = yaml("template.yaml");
    let resources = template["Resources"].as_mapping().expect("Resources");
    let body = match &template["Resources"]["Dashboard"]["Properties"]["DashboardBody"] {
        Yaml::Tagged(tagged) if tagged.tag == "Sub" => str_of(&tagged.value),
        other => panic!("DashboardBody is not a !Sub string: {other:?}"),
    };
    let mut references = 0;
    let mut rest = body.as_str();
    while let Some(start) = rest.find("${") {
        let end = rest[start..].find('}').expect("closed ${…}") + start;
        let name = &rest[start + 2..end];
        if !name.starts_with("AWS::") {
            assert!(
                resources.iter().any(|(key, _)| key.as_str() == Some(name)),
                "the dashboard refers to {name}, which is not a resource"
            );
            references += 1;
        }
        rest = &rest[end..];
    }
    assert!(references >= 8, "only {references} references");

    // The body is JSON once the substitutions are made.
    let mut plain = body.clone();
    while let Some(start) = plain.find("${") {
        let end = plain[start..].find('}').unwrap() + start;
        plain.replace_range(start..=end, "x");
    }
    let dashboard: serde_json::Value = serde_json::from_str(&plain).expect("JSON body");
    let emitted = emitted_metrics();
    let mut checked = 0;
    for widget in dashboard["widgets"].as_array().expect("widgets") {
        for metric in widget["properties"]["metrics"].as_array().expect("metrics") {
            let parts = metric.as_array().expect("a metric row");
            if let Some(expression) = parts[0]["expression"].as_str() {
                if let Some((_, after)) = expression.split_once("MetricName=\"") {
                    let name = after.split('"').next().unwrap();
                    assert!(emitted.contains(&name), "SEARCH of {name}");
                    checked += 1;
                }
            } else if parts[0] == shared::metrics::NAMESPACE {
                let name = parts[1].as_str().unwrap();
                assert!(emitted.contains(&name), "{name} is not emitted");
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "only {checked} metrics checked");
}

/// Every metric name `shared::metrics` writes.
fn emitted_metrics() -> Vec<&'static str> {
    let mut names: Vec<&str> = shared::metrics::Counter::ALL
        .iter()
        .map(|counter| counter.name())
        .collect();
    names.extend([
        "ColdStart",
        "Payments",
        "PaymentAmount",
        "Refunds",
        "RefundAmount",
        "OldestUnknownOutcomeSeconds",
        "OldestDueDeliverySeconds",
    ]);
    names
}

/// The resource a `!Ref X` or `!GetAtt X.Attribute` names, and the attribute.
fn referenced(value: &Yaml) -> Option<(String, Option<String>)> {
    let Yaml::Tagged(tagged) = value else {
        return None;
    };
    let text = tagged.value.as_str()?;
    if tagged.tag == "Ref" {
        Some((text.to_owned(), None))
    } else if tagged.tag == "GetAtt" {
        let (resource, attribute) = text.split_once('.')?;
        Some((resource.to_owned(), Some(attribute.to_owned())))
    } else {
        None
    }
}

/// Every alarm watches a metric of something this template deploys: its namespace and
/// dimensions name a resource of the right type (a function, the API, the table, the queue), so
/// a renamed or removed resource cannot leave an alarm watching nothing. Each notifies the alarm
/// topic, and every function has an alarm on its errors and throttles.
#[test]
fn alarms_watch_resources_of_this_template_and_notify_the_topic() {
    let template = yaml("template.yaml");
    let resources = template["Resources"].as_mapping().expect("Resources");
    let type_of = |name: &str| {
        resources
            .iter()
            .find(|(key, _)| key.as_str() == Some(name))
            .and_then(|(_, resource)| resource["Type"].as_str().map(str::to_owned))
    };
    let mut watched_functions = BTreeSet::new();
    let mut alarms = 0;
    for (name, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::CloudWatch::Alarm") {
            continue;
        }
        alarms += 1;
        let name = str_of(name);
        let properties = &resource["Properties"];
        let notifies = properties["AlarmActions"]
            .as_sequence()
            .is_some_and(|actions| {
                actions
                    .iter()
                    .any(|a| referenced(a) == Some(("AlarmTopic".to_owned(), None)))
            });
        assert!(notifies, "{name} does not notify AlarmTopic");
        let metrics: Vec<&Yaml> = match properties["Metrics"].as_sequence() {
            Some(list) => list
                .iter()
                .filter(|m| !m["MetricStat"].is_null())
                .map(|m| &m["MetricStat"]["Metric"])
                .collect(),
            None => vec![properties],
        };
        assert!(!metrics.is_empty(), "{name} watches no metric");
        for metric in metrics {
            let namespace = str_of(&metric["Namespace"]);
            assert!(
                metric["MetricName"].as_str().is_some(),
                "{name}: no metric name"
            );
            let dimensions = metric["Dimensions"].as_sequence().expect("dimensions");
            assert!(
                !dimensions.is_empty(),
                "{name}: an alarm on the whole account"
            );
            for dimension in dimensions {
                let (key, value) = (str_of(&dimension["Name"]), &dimension["Value"]);
                let expected = match (namespace.as_str(), key.as_str()) {
                    ("AWS/Lambda", "FunctionName") => ("AWS::Serverless::Function", None),
                    ("AWS/ApiGateway", "ApiId") => ("AWS::Serverless::HttpApi", None),
                    ("AWS/DynamoDB", "TableName") => ("AWS::DynamoDB::Table", None),
                    ("AWS/SQS", "QueueName") => ("AWS::SQS::Queue", Some("QueueName")),
                    // The functions' own metrics (shared::metrics): only names they emit.
                    (shared::metrics::NAMESPACE, "Function") => {
                        let metric_name = str_of(&metric["MetricName"]);
                        assert!(
                            emitted_metrics().contains(&metric_name.as_str()),
                            "{name}: {metric_name} is not a metric the functions emit"
                        );
                        ("AWS::Serverless::Function", None)
                    }
                    (shared::metrics::NAMESPACE, "Outcome") => {
                        let outcome = str_of(value);
                        assert!(
                            ["succeeded", "requires_capture", "failed", "canceled"]
                                .contains(&outcome.as_str()),
                            "{name}: {outcome} is not a payment status"
                        );
                        continue;
                    }
                    ("AWS/DynamoDB", "Operation") => {
                        let operation = str_of(value);
                        assert!(
                            [
                                "GetItem",
                                "PutItem",
                                "UpdateItem",
                                "DeleteItem",
                                "Query",
                                "TransactWriteItems"
                            ]
                            .contains(&operation.as_str()),
                            "{name}: {operation} is not an operation the functions use"
                        );
                        continue;
                    }
                    other => panic!("{name}: unexpected dimension {other:?}"),
                };
                let (target, attribute) = referenced(value)
                    .unwrap_or_else(|| panic!("{name}: {key} is not a reference to a resource"));
                assert_eq!(
                    type_of(&target).as_deref(),
                    Some(expected.0),
                    "{name}: {key} refers to {target}"
                );
                assert_eq!(attribute.as_deref(), expected.1, "{name}: {key}");
                if expected.0 == "AWS::Serverless::Function" {
                    watched_functions.insert(target);
                }
            }
        }
    }
    let functions: BTreeSet<String> = resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(key, _)| str_of(key))
        .collect();
    assert_eq!(watched_functions, functions, "every function has an alarm");
    assert!(alarms > functions.len());
}
