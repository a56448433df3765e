//! Cross-function tests live in `tests/`: races between different operations on one payment,
//! driven through the real handlers against the local DynamoDB. This library is empty; it only
//! gives the package a target.
