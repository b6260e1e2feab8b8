//! Role matching with H2's rules: a user's role covers every role below it.

/// Whether a user with `roles` has `wanted`, by H2's rules:
///
/// * each user role `P` is the pattern `P.**`, over components separated by `.`: `ADMIN` covers
///   `ADMIN` and `ADMIN.DRIVER.LON`, not `ADMINS` or `admin`;
/// * in a pattern, `*` matches within one component, `?` one character, `**` any number of
///   components; a leading `!` negates;
/// * the last pattern that matches decides (`[ADMIN.**, !ADMIN.DRIVER]` does not cover
///   `ADMIN.DRIVER`);
/// * legacy: when nothing matches and `wanted` ends in `.*`, a user role equal to the rest, or
///   with exactly one more component, covers it (`H4BADMIN.123456` covers `H4BADMIN.*`).
///
/// ```
/// use kernel_auth::has_role;
///
/// assert!(has_role(&["ADMIN"], "ADMIN.DRIVER.LON"));
/// assert!(!has_role(&["ADMIN.DRIVER"], "ADMIN"));
/// assert!(!has_role(&["ADMIN.**", "!ADMIN.DRIVER"], "ADMIN.DRIVER"));
/// ```
pub fn has_role<R: AsRef<str>>(roles: &[R], wanted: &str) -> bool {
    let wanted_parts: Vec<&str> = wanted.split('.').collect();
    let mut decided = None;
    for role in roles {
        let role = role.as_ref();
        let (negated, pattern) = match role.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, role),
        };
        let mut parts: Vec<&str> = pattern.split('.').collect();
        parts.push("**");
        if matches(&parts, &wanted_parts) {
            decided = Some(!negated);
        }
    }
    if let Some(decided) = decided {
        return decided;
    }
    // H2's legacy rule for `X.*`: X itself, or X and one more component, taken literally.
    let Some(stripped) = wanted.strip_suffix(".*") else {
        return false;
    };
    let stripped_parts: Vec<&str> = stripped.split('.').collect();
    roles.iter().rev().any(|role| {
        let role = role.as_ref();
        if role == stripped {
            return true;
        }
        let parts: Vec<&str> = role.split('.').collect();
        parts.len() == stripped_parts.len() + 1 && parts.starts_with(&stripped_parts)
    })
}

/// Whether the pattern's components match all of `wanted`'s. Dynamic programming over
/// (pattern, wanted) positions: time bounded by their product, whatever the pattern.
fn matches(pattern: &[&str], wanted: &[&str]) -> bool {
    glob(
        pattern,
        wanted,
        |p| *p == "**",
        |p, w| component_matches(p.as_bytes(), w.as_bytes()),
    )
}

/// One component: `*` any run of characters, `?` one character, anything else itself.
fn component_matches(pattern: &[u8], text: &[u8]) -> bool {
    glob(pattern, text, |p| *p == b'*', |p, t| *p == b'?' || p == t)
}

/// Glob matching of `items` by `pattern`, where `is_any` marks a pattern element matching
/// any run of items (possibly empty) and `one` says whether an element matches one item.
fn glob<P, T>(
    pattern: &[P],
    items: &[T],
    is_any: impl Fn(&P) -> bool,
    one: impl Fn(&P, &T) -> bool,
) -> bool {
    // reachable[j]: the first i pattern elements can match the first j items.
    let mut reachable = vec![false; items.len() + 1];
    reachable[0] = true;
    for element in pattern {
        let mut next = vec![false; items.len() + 1];
        if is_any(element) {
            let mut any = false;
            for j in 0..=items.len() {
                any |= reachable[j];
                next[j] = any;
            }
        } else {
            for j in 0..items.len() {
                next[j + 1] = reachable[j] && one(element, &items[j]);
            }
        }
        reachable = next;
    }
    reachable[items.len()]
}

#[cfg(test)]
mod tests {
    use super::has_role;

    /// H2's reference cases (h2-behaviour §6.3, from the upstream unit tests).
    #[test]
    fn h2s_reference_cases() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["ADMIN"], "ADMIN", true),
            (&["ADMIN"], "ADMIN.DRIVER.LON", true),
            (&["ADMIN.DRIVER"], "ADMIN", false),
            (&["ADMIN"], "admin", false),
            (&["DRIVERADMIN"], "DRIVER", false),
            (&["ADMIN.*"], "ADMIN.DRIVER", true),
            (&["*"], "*", true),
            (&["ADMIN.**"], "ADMIN", true),
            (
                &["ADMIN.**", "ADMIN.DRIVER", "!ADMIN.DRIVER"],
                "ADMIN.DRIVER",
                false,
            ),
            (
                &["CUSTOMER", "ADMIN.**.LON", "!ADMIN.DRIVER.*.LON"],
                "ADMIN.DRIVER.LON",
                true,
            ),
            (
                &["ADMIN.DRIVER.???.**", "ADMIN.DRIVER.MNC.BAR", "!ADMIN"],
                "ADMIN.DRIVER.MNC.FOO",
                false,
            ),
            // Legacy `.*` requests.
            (&["CUSTOMER", "H4BADMIN.123456"], "H4BADMIN.*", true),
            (&["H4BADMIN"], "H4BADMIN.*", true),
            (&["H4BADMIN.ORG.ABC"], "H4BADMIN.*", false),
            (&["CUSTOMER", "H4BADMIN.123456"], "H4BADMIN.**", false),
            (&["CUSTOMER", "H4BADMIN"], "*", false),
            (&["ADMIN.DRIVER"], "*.DRIVER", false),
            (&["H4BADMIN.FOO.BAR"], "H4BADMIN.*.*", false),
            (&["H4BADMIN.*.*.BAZ"], "H4BADMIN.*.*.*", true),
            // And the obvious ones.
            (&[], "ADMIN", false),
            (&[""], "ADMIN", false),
        ];
        for (roles, wanted, expected) in cases {
            assert_eq!(has_role(roles, wanted), *expected, "{roles:?} → {wanted}");
        }
    }

    #[test]
    fn pathological_patterns_stay_cheap() {
        let roles = ["**.**.**.**.**.**.**.**.X"];
        let wanted = vec!["A"; 40].join(".");
        assert!(!has_role(&roles, &wanted));
    }
}
