//! Descriptions from the source comments a descriptor set keeps (`SourceCodeInfo`).

use prost_reflect::FileDescriptor;

/// The comment of the definition at `path` in `file`, tidied for a JSON Schema `description`:
/// the comment above it, else the one after it on the same line. `None` when the descriptor
/// set was built without source info or the definition has no comment.
pub(super) fn comment(file: &FileDescriptor, path: &[i32]) -> Option<String> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info
        .location
        .iter()
        .find(|location| location.path == path)?;
    [&location.leading_comments, &location.trailing_comments]
        .into_iter()
        .flatten()
        .map(|comment| tidy(comment))
        .find(|comment| !comment.is_empty())
}

/// The comment's lines without the one space most authors put after `//`, and without
/// trailing blanks.
fn tidy(comment: &str) -> String {
    comment
        .lines()
        .map(|line| line.strip_prefix(' ').unwrap_or(line).trim_end())
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_drops_the_space_after_the_slashes_but_keeps_indentation() {
        assert_eq!(
            tidy(" The mean.\n Example:\n   indented  \n"),
            "The mean.\nExample:\n  indented"
        );
    }

    #[test]
    fn platform_messages_keep_their_comments() {
        let pool = prost_reflect::DescriptorPool::decode(kernel_proto::FILE_DESCRIPTOR_SET)
            .expect("the platform's descriptor set decodes");
        let latency = pool
            .get_message_by_name("kernel.platform.v1.Latency")
            .expect("Latency is a platform message");
        assert_eq!(
            comment(&latency.parent_file(), latency.path()).as_deref(),
            Some("A latency summary in milliseconds.")
        );
        let p95 = latency
            .get_field_by_name("p95_ms")
            .expect("Latency has p95_ms");
        assert_eq!(
            comment(&p95.parent_file(), p95.path()).as_deref(),
            Some("The 95th percentile.")
        );
    }
}
