//! Not written yet: comes with the following commit.
fn main() {}
