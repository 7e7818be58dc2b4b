//! Authentication: the token store (auth methods join in the identity issue).

pub(crate) mod token;
