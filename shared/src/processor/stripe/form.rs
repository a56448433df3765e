//! Stripe's request encoding: `application/x-www-form-urlencoded`, nested fields as
//! `parent[child]=value` (`metadata[payment_id]=pay_…`), booleans as `true`/`false`.

/// A form body under construction, in the order fields were added.
#[derive(Debug, Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn field(mut self, key: &str, value: impl ToString) -> Self {
        self.pairs.push((key.to_owned(), value.to_string()));
        self
    }

    /// `parent[key]=value`, e.g. a `metadata` entry.
    pub fn nested(self, parent: &str, key: &str, value: impl ToString) -> Self {
        self.field(&format!("{parent}[{key}]"), value)
    }

    /// The body (also a query string, for a GET).
    pub fn encode(&self) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in &self.pairs {
            out.append_pair(key, value);
        }
        out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_fields_and_reserved_characters_are_encoded_as_stripe_reads_them() {
        let body = Form::new()
            .field("amount", 2500)
            .field("confirm", false)
            .nested("metadata", "payment_id", "pay_01")
            .nested("metadata", "note", "a&b=c d/é")
            .encode();
        assert_eq!(
            body,
            "amount=2500&confirm=false&metadata%5Bpayment_id%5D=pay_01\
             &metadata%5Bnote%5D=a%26b%3Dc+d%2F%C3%A9"
        );
        let decoded: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(decoded[3], ("metadata[note]".into(), "a&b=c d/é".into()));
    }
}
