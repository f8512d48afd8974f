//! Checks of what a module returns against the contract and the host's caps:
//! descriptor names, counts and sizes from `init`, value types and sizes from
//! `handler`. Pure functions over the shared metric types.

use std::collections::HashSet;

use super::error::InvalidOutput;
use super::limits::{
    MAX_DESCRIPTOR_BYTES, MAX_DESCRIPTOR_TEXT_BYTES, MAX_DESCRIPTORS, MAX_EXTRAS, MAX_GROUPS,
    MAX_METRIC_NAME_BYTES, MAX_STRING_VALUE_BYTES,
};
use crate::metric::{MetricDescriptor, MetricValue, ValueType};

/// Checks the descriptors `init` returned: count, names, uniqueness, field sizes and
/// the bytes of them all.
pub(crate) fn check_descriptors(descriptors: &[MetricDescriptor]) -> Result<(), InvalidOutput> {
    check_count("descriptors", descriptors.len(), MAX_DESCRIPTORS)?;
    let mut seen = HashSet::with_capacity(descriptors.len());
    let mut bytes = 0;
    for descriptor in descriptors {
        check_name(&descriptor.name)?;
        if !seen.insert(descriptor.name.as_str()) {
            return Err(InvalidOutput::DuplicateName(descriptor.name.clone()));
        }
        check_fields(descriptor)?;
        bytes += text_bytes(descriptor);
    }
    if bytes > MAX_DESCRIPTOR_BYTES {
        return Err(InvalidOutput::DescriptorsTooLarge {
            bytes,
            max: MAX_DESCRIPTOR_BYTES,
        });
    }
    Ok(())
}

/// The bytes of every text field of a descriptor.
fn text_bytes(descriptor: &MetricDescriptor) -> usize {
    let MetricDescriptor {
        name,
        units,
        format,
        description,
        groups,
        extra,
        ..
    } = descriptor;
    name.len()
        + units.len()
        + format.len()
        + description.len()
        + groups.iter().map(String::len).sum::<usize>()
        + extra.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
}

/// Checks one value against the descriptor of the metric it answers for.
pub(crate) fn check_value(
    descriptor: &MetricDescriptor,
    value: &MetricValue,
) -> Result<(), InvalidOutput> {
    if value.value_type() != descriptor.value_type {
        return Err(InvalidOutput::WrongType {
            expected: descriptor.value_type,
            got: value.value_type(),
        });
    }
    if let MetricValue::String(text) = value {
        check_len("string value", text, MAX_STRING_VALUE_BYTES)?;
    }
    Ok(())
}

/// A plain number (`collect.answer-number`) as a value of `value_type`: an integer
/// type takes an integral number in its range, a float the nearest `f32`.
pub(crate) fn number_as(value_type: ValueType, number: f64) -> Result<MetricValue, InvalidOutput> {
    /// The integer `number` is, if it is one that `T` holds.
    fn integral<T: TryFrom<i64>>(number: f64) -> Option<T> {
        // Every integer type here fits in i64, whose range the cast saturates to.
        (number.fract() == 0.0).then(|| T::try_from(number as i64).ok())?
    }
    let value = match value_type {
        ValueType::Double => Some(MetricValue::Double(number)),
        ValueType::Float => Some(MetricValue::Float(number as f32)),
        ValueType::Int8 => integral(number).map(MetricValue::Int8),
        ValueType::UInt8 => integral(number).map(MetricValue::UInt8),
        ValueType::Int16 => integral(number).map(MetricValue::Int16),
        ValueType::UInt16 => integral(number).map(MetricValue::UInt16),
        ValueType::Int32 => integral(number).map(MetricValue::Int32),
        ValueType::UInt32 => integral(number).map(MetricValue::UInt32),
        ValueType::String => {
            return Err(InvalidOutput::WrongType {
                expected: ValueType::String,
                got: ValueType::Double,
            });
        }
    };
    value.ok_or(InvalidOutput::NotOfType {
        number,
        expected: value_type,
    })
}

/// A metric name: ASCII letters, digits, `_`, `-`, `.`, 1 to `MAX_METRIC_NAME_BYTES` bytes.
/// gmond puts names in XML attributes and RRD file names, so nothing else is safe.
pub(crate) fn check_name(name: &str) -> Result<(), InvalidOutput> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_METRIC_NAME_BYTES {
        "it is longer than 128 bytes"
    } else if !name.bytes().all(is_name_byte) {
        "only ASCII letters, digits, '_', '-' and '.' are allowed"
    } else {
        return Ok(());
    };
    let shown = super::error::truncate_to(name, MAX_METRIC_NAME_BYTES).to_string();
    Err(InvalidOutput::InvalidName {
        name: shown,
        reason,
    })
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.')
}

fn check_fields(descriptor: &MetricDescriptor) -> Result<(), InvalidOutput> {
    check_len("units", &descriptor.units, MAX_DESCRIPTOR_TEXT_BYTES)?;
    check_len("format", &descriptor.format, MAX_DESCRIPTOR_TEXT_BYTES)?;
    check_len(
        "description",
        &descriptor.description,
        MAX_DESCRIPTOR_TEXT_BYTES,
    )?;
    check_count("groups", descriptor.groups.len(), MAX_GROUPS)?;
    for group in &descriptor.groups {
        check_len("group", group, MAX_DESCRIPTOR_TEXT_BYTES)?;
    }
    check_count("extras", descriptor.extra.len(), MAX_EXTRAS)?;
    for (key, value) in &descriptor.extra {
        check_len("extra key", key, MAX_DESCRIPTOR_TEXT_BYTES)?;
        check_len("extra value", value, MAX_DESCRIPTOR_TEXT_BYTES)?;
    }
    Ok(())
}

fn check_len(field: &'static str, text: &str, max: usize) -> Result<(), InvalidOutput> {
    if text.len() > max {
        return Err(InvalidOutput::StringTooLong {
            field,
            len: text.len(),
            max,
        });
    }
    Ok(())
}

fn check_count(what: &'static str, count: usize, max: usize) -> Result<(), InvalidOutput> {
    if count > max {
        return Err(InvalidOutput::TooMany { what, count, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::Slope;

    #[test]
    fn a_number_takes_the_declared_type_when_it_is_one() {
        assert_eq!(
            number_as(ValueType::Double, 0.5),
            Ok(MetricValue::Double(0.5))
        );
        assert_eq!(
            number_as(ValueType::Float, 0.5),
            Ok(MetricValue::Float(0.5))
        );
        assert_eq!(
            number_as(ValueType::Int8, -128.0),
            Ok(MetricValue::Int8(-128))
        );
        assert_eq!(
            number_as(ValueType::UInt32, 4_294_967_295.0),
            Ok(MetricValue::UInt32(u32::MAX))
        );
        for (value_type, number) in [
            (ValueType::UInt8, 256.0),
            (ValueType::UInt16, -1.0),
            (ValueType::Int32, 0.5),
            (ValueType::UInt32, f64::NAN),
            (ValueType::Int16, f64::INFINITY),
        ] {
            assert!(
                matches!(
                    number_as(value_type, number),
                    Err(InvalidOutput::NotOfType { .. })
                ),
                "{value_type} {number}"
            );
        }
        assert!(matches!(
            number_as(ValueType::String, 1.0),
            Err(InvalidOutput::WrongType { .. })
        ));
    }

    fn descriptor(name: &str, value_type: ValueType) -> MetricDescriptor {
        MetricDescriptor {
            name: name.to_string(),
            value_type,
            units: "s".into(),
            slope: Slope::Both,
            format: "%f".into(),
            time_max: 60,
            description: String::new(),
            groups: vec!["g".into()],
            extra: vec![],
        }
    }

    #[test]
    fn good_names_pass() {
        for name in ["cpu_user", "disk-free.sda1", "A9", &"x".repeat(128)] {
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn bad_names_fail_with_a_reason() {
        for name in ["", "has space", "ünï", "a/b", "<xml>", &"x".repeat(129)] {
            assert!(
                matches!(check_name(name), Err(InvalidOutput::InvalidName { .. })),
                "{name:?}"
            );
        }
    }

    #[test]
    fn duplicates_are_refused() {
        let descriptors = [
            descriptor("a", ValueType::Double),
            descriptor("a", ValueType::Int8),
        ];
        assert_eq!(
            check_descriptors(&descriptors),
            Err(InvalidOutput::DuplicateName("a".into()))
        );
    }

    #[test]
    fn too_many_descriptors_are_refused() {
        let descriptors: Vec<_> = (0..=MAX_DESCRIPTORS)
            .map(|i| descriptor(&format!("m{i}"), ValueType::Double))
            .collect();
        assert!(matches!(
            check_descriptors(&descriptors),
            Err(InvalidOutput::TooMany {
                what: "descriptors",
                ..
            })
        ));
        assert_eq!(check_descriptors(&descriptors[..MAX_DESCRIPTORS]), Ok(()));
    }

    #[test]
    fn oversize_descriptor_fields_are_refused() {
        let mut long_units = descriptor("a", ValueType::Double);
        long_units.units = "u".repeat(MAX_DESCRIPTOR_TEXT_BYTES + 1);
        assert!(matches!(
            check_descriptors(&[long_units]),
            Err(InvalidOutput::StringTooLong { field: "units", .. })
        ));
        let mut many_groups = descriptor("a", ValueType::Double);
        many_groups.groups = vec!["g".into(); MAX_GROUPS + 1];
        assert!(matches!(
            check_descriptors(&[many_groups]),
            Err(InvalidOutput::TooMany { what: "groups", .. })
        ));
    }

    #[test]
    fn values_must_match_the_declared_type() {
        let double = descriptor("a", ValueType::Double);
        assert_eq!(check_value(&double, &MetricValue::Double(1.0)), Ok(()));
        assert_eq!(
            check_value(&double, &MetricValue::Float(1.0)),
            Err(InvalidOutput::WrongType {
                expected: ValueType::Double,
                got: ValueType::Float
            })
        );
    }

    #[test]
    fn string_values_are_capped() {
        let string = descriptor("s", ValueType::String);
        let at_cap = MetricValue::String("v".repeat(MAX_STRING_VALUE_BYTES));
        let over_cap = MetricValue::String("v".repeat(MAX_STRING_VALUE_BYTES + 1));
        assert_eq!(check_value(&string, &at_cap), Ok(()));
        assert!(matches!(
            check_value(&string, &over_cap),
            Err(InvalidOutput::StringTooLong {
                field: "string value",
                ..
            })
        ));
    }
}
