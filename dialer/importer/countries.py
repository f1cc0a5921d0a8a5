"""A row's country from what agencies write in a country column: ISO codes or names in English or
Spanish ("MX", "MEX", "México", "EE. UU.", "Estados Unidos", "Reino Unido"), to a phone region.

The region reads the row's national numbers; the jurisdiction (the compliance profile's code, "UK"
for Great Britain) follows from it.
"""

from __future__ import annotations

import unicodedata

import phonenumbers

# Names and codes, compared after folding case, accents, spaces and punctuation ("EE. UU." ==
# "eeuu", "Perú" == "peru"). Two-letter codes phonenumbers knows are accepted without a listing.
_NAMES: dict[str, tuple[str, ...]] = {
    "MX": ("mex", "mexico", "mejico", "estadosunidosmexicanos", "republicamexicana"),
    "US": (
        "usa", "eeuu", "eua", "estadosunidos", "estadosunidosdeamerica", "unitedstates",
        "unitedstatesofamerica", "norteamerica",
    ),
    "ES": ("esp", "espana", "spain", "reinodeespana"),
    "CO": ("col", "colombia", "republicadecolombia"),
    "PE": ("per", "peru", "republicadelperu"),
    "CL": ("chl", "chile", "republicadechile"),
    "GB": (
        "uk", "gbr", "unitedkingdom", "greatbritain", "britain", "england", "scotland", "wales",
        "northernireland", "reinounido", "granbretana", "inglaterra", "escocia", "gales",
    ),
    "CA": ("can", "canada"),
    "AR": ("arg", "argentina"),
    "BR": ("bra", "brazil", "brasil"),
    "EC": ("ecu", "ecuador"),
    "VE": ("ven", "venezuela"),
    "BO": ("bol", "bolivia"),
    "PY": ("pry", "paraguay"),
    "UY": ("ury", "uruguay"),
    "GT": ("gtm", "guatemala"),
    "HN": ("hnd", "honduras"),
    "SV": ("slv", "elsalvador", "salvador"),
    "NI": ("nic", "nicaragua"),
    "CR": ("cri", "costarica"),
    "PA": ("pan", "panama"),
    "DO": ("dom", "republicadominicana", "dominicanrepublic"),
    "PR": ("pri", "puertorico"),
    "CU": ("cub", "cuba"),
    "PT": ("prt", "portugal"),
    "FR": ("fra", "france", "francia"),
    "DE": ("deu", "germany", "alemania"),
    "IT": ("ita", "italy", "italia"),
}  # fmt: skip
_BY_NAME = {name: code for code, names in _NAMES.items() for name in names}
_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)
# The compliance profiles are named by jurisdiction; Great Britain's is "UK".
_JURISDICTION = {"GB": "UK"}


def _key(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if ch.isalnum())


def region_of(text: str) -> str | None:
    """The phone region (ISO 3166 alpha-2; "GB" for the UK) a country cell names, or None."""
    key = _key(text)
    if len(key) == 2 and key.upper() in _REGIONS:
        return key.upper()
    return _BY_NAME.get(key)


def jurisdiction_of(region: str) -> str:
    """The compliance profile code for a region."""
    return _JURISDICTION.get(region, region)


def region_of_jurisdiction(code: str) -> str:
    """The phone region of a profile code ("UK" -> "GB")."""
    return "GB" if code == "UK" else code
