use proptest::prelude::*;
use serde_json::Value as Json;

use super::*;

/// Real datagrams from Ganglia 3.7.2 (reference `captures/`), one hex packet per line.
const CAPTURES: [(&str, &str); 4] = [
    (
        "gmond_packets.hex",
        include_str!("../testdata/gmond_packets.hex"),
    ),
    (
        "gmetric_packets.hex",
        include_str!("../testdata/gmetric_packets.hex"),
    ),
    (
        "edge_gmond_packets.hex",
        include_str!("../testdata/edge_gmond_packets.hex"),
    ),
    (
        "edge_gmetric_packets.hex",
        include_str!("../testdata/edge_gmetric_packets.hex"),
    ),
];

/// The reference decoder's reading of the first packets of each capture, in order.
const DECODED: [(&str, &str); 4] = [
    (
        "gmond_decoded.jsonl",
        include_str!("../testdata/gmond_decoded.jsonl"),
    ),
    (
        "gmetric_decoded.jsonl",
        include_str!("../testdata/gmetric_decoded.jsonl"),
    ),
    (
        "edge_gmond_decoded.jsonl",
        include_str!("../testdata/edge_gmond_decoded.jsonl"),
    ),
    (
        "edge_gmetric_decoded.jsonl",
        include_str!("../testdata/edge_gmetric_decoded.jsonl"),
    ),
];

fn packets(capture: &str) -> Vec<Vec<u8>> {
    capture
        .lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| hex::decode(line.split_whitespace().next().unwrap()).unwrap())
        .collect()
}

fn all_packets() -> &'static [Vec<u8>] {
    static ALL: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        CAPTURES
            .iter()
            .flat_map(|(_, capture)| packets(capture))
            .collect()
    })
}

fn reencode(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode(message, &mut out).unwrap();
    out
}

#[test]
fn every_captured_packet_decodes_and_reencodes_to_the_same_bytes() {
    let mut count = 0;
    for (file, capture) in CAPTURES {
        for (line, packet) in packets(capture).iter().enumerate() {
            let message =
                decode(packet).unwrap_or_else(|err| panic!("{file} packet {line}: {err}"));
            assert_eq!(
                reencode(&message),
                *packet,
                "{file} packet {line}: {message:?}"
            );
            assert_eq!(encoded_len(&message), packet.len());
            count += 1;
        }
    }
    assert_eq!(
        count,
        216 + 34 + 151 + 32,
        "LAYOUT.md counts this many packets"
    );
}

#[test]
fn every_message_kind_is_in_the_captures() {
    let ids: std::collections::BTreeSet<u32> = all_packets()
        .iter()
        .map(|p| decode(p).unwrap().id())
        .collect();
    let expected = [
        id::METADATA,
        id::USHORT,
        id::INT,
        id::UINT,
        id::STRING,
        id::FLOAT,
        id::DOUBLE,
        id::METADATA_REQUEST,
    ];
    assert_eq!(
        ids.into_iter().collect::<Vec<_>>(),
        expected,
        "no gmetric_short (130) was captured"
    );
}

#[test]
fn decoded_fields_match_the_reference_decoder() {
    let mut checked = 0;
    for ((file, capture), (_, decoded)) in CAPTURES.iter().zip(DECODED) {
        let packets = packets(capture);
        for (line, expected) in decoded.lines().enumerate() {
            let expected: Json = serde_json::from_str(expected).unwrap();
            let message = decode(&packets[line]).unwrap();
            assert_matches_json(&message, &expected, &format!("{file} packet {line}"));
            checked += 1;
        }
    }
    assert_eq!(checked, 123 + 32 + 151 + 32);
}

fn assert_matches_json(message: &Message, json: &Json, at: &str) {
    let header = message.header();
    assert_eq!(json["id"], u64::from(message.id()), "{at}");
    assert_eq!(json["len"], encoded_len(message) as u64, "{at}");
    assert_eq!(json["host"], header.host.as_str(), "{at}");
    assert_eq!(json["name"], header.name.as_str(), "{at}");
    assert_eq!(json["spoof"], u64::from(header.spoof), "{at}");
    match message {
        Message::Metadata(metadata) => {
            assert_eq!(json["type"], metadata.value_type.gmond_name(), "{at}");
            assert_eq!(json["name2"], header.name.as_str(), "{at}");
            assert_eq!(json["units"], metadata.units.as_str(), "{at}");
            assert_eq!(json["slope"], u64::from(slope_code(metadata.slope)), "{at}");
            assert_eq!(json["tmax"], u64::from(metadata.tmax), "{at}");
            assert_eq!(json["dmax"], u64::from(metadata.dmax), "{at}");
            let extras: Vec<(String, String)> =
                serde_json::from_value(json["extra"].clone()).unwrap();
            assert_eq!(extras, metadata.extras, "{at}");
        }
        Message::Value(value) => {
            assert_eq!(json["fmt"], value.format.as_str(), "{at}");
            match &value.value {
                MetricValue::String(text) => assert_eq!(json["value"], text.as_str(), "{at}"),
                MetricValue::Int32(v) => {
                    assert_eq!(json["value"].as_i64(), Some(i64::from(*v)), "{at}")
                }
                // The reference decoder printed floats with a last-digit error; as an f32
                // the JSON number is still exactly the packet's value.
                MetricValue::Float(v) => {
                    assert_eq!(json["value"].as_f64().map(|x| x as f32), Some(*v), "{at}")
                }
                number => assert_eq!(json["value"].as_f64(), number.as_f64(), "{at}"),
            }
        }
        Message::MetadataRequest(_) => {}
    }
}

/// LAYOUT.md §1.2 and §1.3 take these apart field by field.
#[test]
fn layout_worked_examples_encode_byte_for_byte() {
    let header = |name: &str| Header {
        host: "vm".into(),
        name: name.into(),
        spoof: false,
    };
    let gm_int8 = Message::Metadata(Metadata {
        header: header("gm_int8"),
        value_type: ValueType::Int8,
        units: "deg".into(),
        slope: Slope::Both,
        tmax: 60,
        dmax: 0,
        extras: vec![
            ("GROUP".into(), "gmgroup".into()),
            ("DESC".into(), "int8 metric".into()),
        ],
    });
    let expected =
        "00000080 00000002 766d0000 00000007 676d5f69 6e743800 00000000 00000004 696e7438 \
        00000007 676d5f69 6e743800 00000003 64656700 00000003 0000003c 00000000 00000002 \
        00000005 47524f55 50000000 00000007 676d6772 6f757000 00000004 44455343 \
        0000000b 696e7438 206d6574 72696300"
            .replace(' ', "");
    assert_eq!(hex::encode(reencode(&gm_int8)), expected);

    let values = [
        (
            "ref_int",
            "%d",
            MetricValue::Int32(-42),
            "0000008300000002766d0000000000077265665f696e7400000000000000000225640000ffffffd6",
        ),
        (
            "cpu_num",
            "%hu",
            MetricValue::UInt16(2),
            "0000008100000002766d000000000007637075 5f6e756d00000000000000000325687500 00000002",
        ),
        (
            "ref_float",
            "%.3f",
            MetricValue::Float(f32::from_bits(0x4049_0fd0)),
            "0000008600000002766d0000000000097265665f666c6f61740000000000000000000004252e336640490fd0",
        ),
        (
            "ref_double",
            "%.6f",
            MetricValue::Double(std::f64::consts::E),
            "00000087 00000002766d0000 0000000a7265665f646f75626c650000 00000000 00000004252e3666 4005bf0a8b145769",
        ),
        (
            "gm_int8",
            "%s",
            MetricValue::String("-5".into()),
            "0000008500000002766d000000000007676d5f696e74380000000000000000022573000000000002 2d350000",
        ),
    ];
    for (name, format, value, expected) in values {
        let message = Message::Value(Value {
            header: header(name),
            format: format.into(),
            value,
        });
        assert_eq!(
            hex::encode(reencode(&message)),
            expected.replace(' ', ""),
            "{name}"
        );
    }

    let request = Message::MetadataRequest(Header {
        host: "localhost".into(),
        name: "ref_string".into(),
        spoof: false,
    });
    let expected =
        "00000088 00000009 6c6f6361 6c686f73 74000000 0000000a 7265665f 73747269 6e670000 00000000";
    assert_eq!(hex::encode(reencode(&request)), expected.replace(' ', ""));
}

#[test]
fn eight_bit_values_travel_as_16_bit_words() {
    let header = Header {
        host: "h".into(),
        name: "n".into(),
        spoof: false,
    };
    let cases = [
        (
            MetricValue::Int8(-5),
            MetricValue::Int16(-5),
            id::SHORT,
            0xffff_fffb_u32,
        ),
        (
            MetricValue::UInt8(200),
            MetricValue::UInt16(200),
            id::USHORT,
            200,
        ),
        (
            MetricValue::Int16(-1234),
            MetricValue::Int16(-1234),
            id::SHORT,
            (-1234_i32) as u32,
        ),
    ];
    for (sent, received, expected_id, word) in cases {
        let bytes = reencode(&Message::Value(Value {
            header: header.clone(),
            format: "%d".into(),
            value: sent,
        }));
        assert_eq!(bytes[..4], expected_id.to_be_bytes());
        assert_eq!(bytes[bytes.len() - 4..], word.to_be_bytes());
        let Message::Value(decoded) = decode(&bytes).unwrap() else {
            panic!("not a value")
        };
        assert_eq!(decoded.value, received);
    }
}

fn metadata_with_extras(extras: usize, data_len: usize) -> Message {
    Message::Metadata(Metadata {
        header: Header {
            host: "vm".into(),
            name: "big".into(),
            spoof: false,
        },
        value_type: ValueType::String,
        units: String::new(),
        slope: Slope::Zero,
        tmax: 60,
        dmax: 0,
        extras: (0..extras)
            .map(|i| (format!("K{i}"), "x".repeat(data_len)))
            .collect(),
    })
}

#[test]
fn a_message_over_the_datagram_limit_is_refused_not_truncated() {
    let mut out = vec![1, 2, 3];
    let fits = metadata_with_extras(1, MAX_UDP_MSG_LEN - 76);
    assert_eq!(encoded_len(&fits), MAX_UDP_MSG_LEN);
    encode(&fits, &mut out).unwrap();
    assert_eq!(out.len(), 3 + MAX_UDP_MSG_LEN);

    let too_big = metadata_with_extras(1, MAX_UDP_MSG_LEN - 75);
    let err = encode(&too_big, &mut out).unwrap_err();
    assert_eq!(
        err,
        EncodeError::TooLong {
            name: "big".into(),
            len: MAX_UDP_MSG_LEN + 4,
            limit: MAX_UDP_MSG_LEN
        }
    );
    assert_eq!(out.len(), 3 + MAX_UDP_MSG_LEN, "nothing appended on error");

    let mut small = Vec::new();
    assert!(encode_with_limit(&fits, 100, &mut small).is_err());
    assert!(small.is_empty());
    encode_with_limit(&too_big, 9000, &mut small).unwrap();
    assert_eq!(decode(&small).unwrap(), too_big);
}

fn ref_int() -> Vec<u8> {
    hex::decode("0000008300000002766d0000000000077265665f696e7400000000000000000225640000ffffffd6")
        .unwrap()
}

#[test]
fn malformed_datagrams_get_clear_errors() {
    let mut trailing = ref_int();
    trailing.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(decode(&trailing), Err(DecodeError::TrailingBytes(4)));

    assert_eq!(
        decode(&[]),
        Err(DecodeError::Truncated {
            field: "id",
            offset: 0
        })
    );
    assert_eq!(
        decode(&ref_int()[..38]),
        Err(DecodeError::Truncated {
            field: "value",
            offset: 36
        })
    );

    let mut unknown = ref_int();
    unknown[3] = 137;
    assert_eq!(decode(&unknown), Err(DecodeError::UnknownId(137)));

    let mut bad_spoof = ref_int();
    bad_spoof[27] = 2;
    assert_eq!(
        decode(&bad_spoof),
        Err(DecodeError::BadBool {
            field: "spoof",
            offset: 24,
            value: 2
        })
    );

    let mut bad_padding = ref_int();
    bad_padding[11] = b'!';
    assert_eq!(
        decode(&bad_padding),
        Err(DecodeError::BadPadding {
            field: "host",
            offset: 10
        })
    );

    let mut not_utf8 = ref_int();
    not_utf8[8] = 0xff;
    assert_eq!(
        decode(&not_utf8),
        Err(DecodeError::NotUtf8 {
            field: "host",
            offset: 8
        })
    );

    let mut huge_string = ref_int();
    huge_string[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        decode(&huge_string),
        Err(DecodeError::Truncated {
            field: "host",
            offset: 8
        })
    );

    let mut short_out_of_range = ref_int();
    short_out_of_range[3] = 130;
    short_out_of_range[36..].copy_from_slice(&0x0001_0000_u32.to_be_bytes());
    assert_eq!(
        decode(&short_out_of_range),
        Err(DecodeError::OutOfRange {
            id: 130,
            value: 0x1_0000
        })
    );
    let mut ushort_out_of_range = short_out_of_range.clone();
    ushort_out_of_range[3] = 129;
    assert_eq!(
        decode(&ushort_out_of_range),
        Err(DecodeError::OutOfRange {
            id: 129,
            value: 0x1_0000
        })
    );
}

/// Packet 3 of gmetric_packets.hex: the LAYOUT.md §1.2 example (gm_int8 metadata).
fn gm_int8_metadata() -> Vec<u8> {
    packets(CAPTURES[1].1).swap_remove(2)
}

#[test]
fn malformed_metadata_gets_clear_errors() {
    let good = gm_int8_metadata();
    assert!(matches!(decode(&good), Ok(Message::Metadata(_))));

    let mut absurd_count = good.clone();
    absurd_count[68..72].copy_from_slice(&0x4000_0000_u32.to_be_bytes());
    assert_eq!(
        decode(&absurd_count),
        Err(DecodeError::TooManyExtras {
            count: 0x4000_0000,
            remaining: 48,
            offset: 72
        })
    );

    let mut bad_slope = good.clone();
    bad_slope[59] = 6;
    assert_eq!(decode(&bad_slope), Err(DecodeError::UnknownSlope(6)));

    let mut bad_type = good.clone();
    bad_type[32..36].copy_from_slice(b"int9");
    assert_eq!(
        decode(&bad_type),
        Err(DecodeError::UnknownType("int9".into()))
    );

    let mut other_name = good.clone();
    other_name[46] = b'9';
    assert_eq!(
        decode(&other_name),
        Err(DecodeError::NameMismatch {
            header: "gm_int8".into(),
            body: "gm_int9".into()
        })
    );
}

#[test]
fn python_type_aliases_are_not_wire_types() {
    let mut alias = gm_int8_metadata();
    // "int8" -> "uint": same length, an alias ValueType::from_gmond_name accepts.
    alias[32..36].copy_from_slice(b"uint");
    assert_eq!(decode(&alias), Err(DecodeError::UnknownType("uint".into())));
}

#[test]
fn every_truncation_of_every_captured_packet_is_an_error() {
    for packet in all_packets() {
        for len in 0..packet.len() {
            assert!(
                decode(&packet[..len]).is_err(),
                "prefix of {len} bytes of {}",
                hex::encode(packet)
            );
        }
    }
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[a-z_]{1,12}", ".{0,40}"]
}

fn any_value() -> impl Strategy<Value = MetricValue> {
    prop_oneof![
        any_text().prop_map(MetricValue::String),
        any::<i8>().prop_map(MetricValue::Int8),
        any::<u8>().prop_map(MetricValue::UInt8),
        any::<i16>().prop_map(MetricValue::Int16),
        any::<u16>().prop_map(MetricValue::UInt16),
        any::<i32>().prop_map(MetricValue::Int32),
        any::<u32>().prop_map(MetricValue::UInt32),
        any::<u32>().prop_map(|bits| MetricValue::Float(f32::from_bits(bits))),
        any::<u64>().prop_map(|bits| MetricValue::Double(f64::from_bits(bits))),
    ]
}

fn any_header() -> impl Strategy<Value = Header> {
    (any_text(), any_text(), any::<bool>()).prop_map(|(host, name, spoof)| Header {
        host,
        name,
        spoof,
    })
}

fn any_message() -> impl Strategy<Value = Message> {
    let slopes = prop::sample::select(vec![
        Slope::Zero,
        Slope::Positive,
        Slope::Negative,
        Slope::Both,
        Slope::Unspecified,
        Slope::Derivative,
    ]);
    let metadata = (
        any_header(),
        prop::sample::select(ValueType::ALL.to_vec()),
        any_text(),
        slopes,
        any::<u32>(),
        any::<u32>(),
        prop::collection::vec((any_text(), any_text()), 0..8),
    )
        .prop_map(|(header, value_type, units, slope, tmax, dmax, extras)| {
            Message::Metadata(Metadata {
                header,
                value_type,
                units,
                slope,
                tmax,
                dmax,
                extras,
            })
        });
    let value = (any_header(), any_text(), any_value()).prop_map(|(header, format, value)| {
        Message::Value(Value {
            header,
            format,
            value,
        })
    });
    prop_oneof![
        metadata,
        value,
        any_header().prop_map(Message::MetadataRequest)
    ]
}

/// What a message reads back as: 8-bit values come back in their 16-bit carriers.
fn as_received(message: Message) -> Message {
    match message {
        Message::Value(mut value) => {
            value.value = match value.value {
                MetricValue::Int8(v) => MetricValue::Int16(v.into()),
                MetricValue::UInt8(v) => MetricValue::UInt16(v.into()),
                other => other,
            };
            Message::Value(value)
        }
        other => other,
    }
}

/// Compares floats by their bits, so NaN payloads count.
fn same(a: &Message, b: &Message) -> bool {
    match (a, b) {
        (Message::Value(a), Message::Value(b)) => {
            let same_value = match (&a.value, &b.value) {
                (MetricValue::Float(x), MetricValue::Float(y)) => x.to_bits() == y.to_bits(),
                (MetricValue::Double(x), MetricValue::Double(y)) => x.to_bits() == y.to_bits(),
                (x, y) => x == y,
            };
            a.header == b.header && a.format == b.format && same_value
        }
        (a, b) => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn messages_round_trip(message in any_message()) {
        let mut bytes = Vec::new();
        encode_with_limit(&message, usize::MAX, &mut bytes).unwrap();
        prop_assert_eq!(bytes.len(), encoded_len(&message));
        prop_assert_eq!(bytes.len() % 4, 0);
        let decoded = decode(&bytes).unwrap();
        let expected = as_received(message);
        prop_assert!(same(&decoded, &expected), "{:?} != {:?}", decoded, expected);
        prop_assert_eq!(reencode_unlimited(&decoded), bytes);
    }

    /// No input panics; any input that decodes is canonical (re-encodes to itself).
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(message) = decode(&bytes) {
            prop_assert_eq!(reencode_unlimited(&message), bytes);
        }
    }

    /// Corrupting real packets: errors or canonical messages, never a panic.
    #[test]
    fn corrupted_captured_packets_never_panic(
        index in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut packet = index.get(all_packets()).clone();
        for (at, byte) in edits {
            let at = at.index(packet.len());
            packet[at] = byte;
        }
        if let Ok(message) = decode(&packet) {
            prop_assert_eq!(reencode_unlimited(&message), packet);
        }
    }
}

fn reencode_unlimited(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode_with_limit(message, usize::MAX, &mut out).unwrap();
    out
}
