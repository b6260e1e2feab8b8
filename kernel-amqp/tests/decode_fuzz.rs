//! Property tests: the decoders take any bytes without panicking (the broker forwards what any
//! of its users publish). `PROPTEST_CASES=100000 cargo test -p kernel-amqp --test decode_fuzz`
//! runs a longer search.

use proptest::prelude::*;

proptest! {
    #[test]
    fn any_content_header_decodes_or_fails_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = kernel_amqp::fuzz::content_header(&bytes);
    }

    #[test]
    fn a_header_with_valid_framing_and_random_properties_decodes_or_fails_cleanly(
        flags in any::<u16>(),
        properties in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        bytes.extend_from_slice(&flags.to_be_bytes());
        bytes.extend_from_slice(&properties);
        let _ = kernel_amqp::fuzz::content_header(&bytes);
    }

    #[test]
    fn any_method_decodes_or_fails_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        kernel_amqp::fuzz::method(&bytes);
    }

    #[test]
    fn any_byte_stream_splits_into_frames_or_fails_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        kernel_amqp::fuzz::frames(&bytes);
    }
}
