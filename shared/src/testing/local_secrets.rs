//! A local Secrets Manager of the test's own (infra/local_secrets.py: moto's server on a free
//! loopback port) holding one secret, ended when the handle is dropped: what the Stripe keys
//! are read from (`processor::stripe::keys`), as on AWS.

use super::workspace_root;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct LocalSecrets {
    child: Child,
    /// `http://127.0.0.1:<port>` (`AWS_ENDPOINT_URL_SECRETS_MANAGER`).
    pub endpoint: String,
    /// The stored secret's ARN (`STRIPE_SECRET_ARN`).
    pub arn: String,
}

impl LocalSecrets {
    /// Starts one holding `secret_string`, and waits until it is stored.
    pub fn start(secret_string: &str) -> Self {
        let root = workspace_root();
        let (python, port) = super::python_and_port();
        let mut child = Command::new(python)
            .arg(root.join("infra/local_secrets.py"))
            .arg("--port")
            .arg(port.to_string())
            .env("SECRET_STRING", secret_string)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the local Secrets Manager starts (make tools installs moto into .venv)");
        let stdout = child.stdout.take().expect("its stdout");
        let arn = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.starts_with("arn:"))
            .expect("the local Secrets Manager stores the secret and prints its ARN");
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            arn,
        }
    }
}

impl Drop for LocalSecrets {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
