"""Whether a number is wireless, for the TCPA's consent rule: what the numbering plan says, else
what the file said, else unknown (which is treated as wireless: the risk is the caller's).

47 U.S.C. 227(b)(1)(A)(iii): calls to a wireless number made with an automatic telephone dialing
system need the called party's prior express consent; a call launched by a person's own click
(preview) is the usual way collectors reach wireless numbers without it.
"""

from __future__ import annotations

import functools

import phonenumbers
from phonenumbers import PhoneNumberType

WIRELESS, LANDLINE, UNKNOWN = "wireless", "landline", "unknown"
# The importer's phone kinds (dialer.importer.columns): a column named "mobile"/"celular" is a
# declaration by the creditor; "home" and "work" lines count as landlines unless the numbering
# plan says mobile.
_DECLARED = {"mobile": WIRELESS, "wireless": WIRELESS, "home": LANDLINE, "work": LANDLINE,
             "landline": LANDLINE}  # fmt: skip


@functools.lru_cache(maxsize=65536)
def _plan(e164: str) -> str:
    try:
        kind = phonenumbers.number_type(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return UNKNOWN
    if kind in (PhoneNumberType.MOBILE, PhoneNumberType.PAGER):
        return WIRELESS
    if kind == PhoneNumberType.FIXED_LINE:
        return LANDLINE
    return UNKNOWN  # NANP says FIXED_LINE_OR_MOBILE: the plan cannot tell


def phone_type(e164: str, declared: str | None) -> str:
    """wireless, landline or unknown for the number `e164` the file declared as `declared`."""
    plan, said = _plan(e164), _DECLARED.get((declared or "").lower(), UNKNOWN)
    # Either source saying wireless is enough: a wrong "landline" costs a TCPA violation.
    if WIRELESS in (plan, said):
        return WIRELESS
    return LANDLINE if LANDLINE in (plan, said) else UNKNOWN


def needs_consent(e164: str, declared: str | None) -> bool:
    """An automatic dial of this number needs consent: wireless, or not known to be a landline."""
    return phone_type(e164, declared) != LANDLINE
