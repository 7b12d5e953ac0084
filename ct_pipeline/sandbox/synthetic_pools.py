"""Value pools the synthetic CRM generator samples from.

Faker is slow per call, so every pool here is built once per seed (names, streets, companies,
PIN codes) and then indexed with numpy for millions of rows. Indian mobile prefixes are probed
against `phonenumbers` once, so every number the generator calls a mobile is one libphonenumber
also classifies as an Indian mobile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import phonenumbers
from faker import Faker
from faker.providers.person import en_IN as faker_person_in

FAKER_LOCALE = "en_IN"
STREET_POOL_SIZE = 3000
COMPANY_POOL_SIZE = 1500
PINS_PER_CITY = 25

# Probe tails used to decide that a 4-digit prefix is mobile-only in libphonenumber's metadata.
PREFIX_PROBE_TAILS = ("000000", "123456", "300000", "555555", "987654", "999999")

# First-digit shares of Indian mobile numbers in use (9 and 8 series dominate, 6 is newest).
MOBILE_FIRST_DIGIT_SHARE = {9: 0.42, 8: 0.26, 7: 0.22, 6: 0.10}

# The cities most app users live in, with their state; Faker lists them by population, but
# does not pair cities with states, and its state abbreviations do not line up with its names.
CITIES: tuple[tuple[str, str, str], ...] = (
    ("Mumbai", "Maharashtra", "MH"),
    ("Delhi", "Delhi", "DL"),
    ("Bangalore", "Karnataka", "KA"),
    ("Hyderabad", "Telangana", "TG"),
    ("Chennai", "Tamil Nadu", "TN"),
    ("Kolkata", "West Bengal", "WB"),
    ("Pune", "Maharashtra", "MH"),
    ("Ahmedabad", "Gujarat", "GJ"),
    ("Jaipur", "Rajasthan", "RJ"),
    ("Surat", "Gujarat", "GJ"),
    ("Lucknow", "Uttar Pradesh", "UP"),
    ("Kanpur", "Uttar Pradesh", "UP"),
    ("Nagpur", "Maharashtra", "MH"),
    ("Indore", "Madhya Pradesh", "MP"),
    ("Thane", "Maharashtra", "MH"),
    ("Bhopal", "Madhya Pradesh", "MP"),
    ("Visakhapatnam", "Andhra Pradesh", "AP"),
    ("Patna", "Bihar", "BR"),
    ("Vadodara", "Gujarat", "GJ"),
    ("Ghaziabad", "Uttar Pradesh", "UP"),
    ("Ludhiana", "Punjab", "PB"),
    ("Agra", "Uttar Pradesh", "UP"),
    ("Nashik", "Maharashtra", "MH"),
    ("Faridabad", "Haryana", "HR"),
    ("Meerut", "Uttar Pradesh", "UP"),
    ("Rajkot", "Gujarat", "GJ"),
    ("Varanasi", "Uttar Pradesh", "UP"),
    ("Srinagar", "Jammu and Kashmir", "JK"),
    ("Aurangabad", "Maharashtra", "MH"),
    ("Amritsar", "Punjab", "PB"),
    ("Ranchi", "Jharkhand", "JH"),
    ("Coimbatore", "Tamil Nadu", "TN"),
    ("Jabalpur", "Madhya Pradesh", "MP"),
    ("Gwalior", "Madhya Pradesh", "MP"),
    ("Vijayawada", "Andhra Pradesh", "AP"),
    ("Jodhpur", "Rajasthan", "RJ"),
    ("Madurai", "Tamil Nadu", "TN"),
    ("Guwahati", "Assam", "AS"),
    ("Chandigarh", "Chandigarh", "CH"),
    ("Mysore", "Karnataka", "KA"),
    ("Kochi", "Kerala", "KL"),
    ("Thiruvananthapuram", "Kerala", "KL"),
    ("Bhubaneswar", "Odisha", "OD"),
    ("Dehradun", "Uttarakhand", "UK"),
)
UNION_TERRITORIES = frozenset({"DL", "CH", "JK"})


@dataclass(frozen=True)
class Pools:
    """Arrays of values to index with numpy: names, streets, companies, cities and PINs."""

    male_first: np.ndarray
    female_first: np.ndarray
    last: np.ndarray
    streets: np.ndarray
    companies: np.ndarray
    company_domains: np.ndarray
    city_names: np.ndarray
    city_states: np.ndarray
    city_weights: np.ndarray
    city_pins: np.ndarray  # shape (len(CITIES), PINS_PER_CITY), six-digit ints
    user_names: np.ndarray


@lru_cache(maxsize=8)
def build_pools(seed: int) -> Pools:
    """Build the Faker-backed pools for a seed (cached: Faker is called a few thousand times)."""
    fake = Faker(FAKER_LOCALE)
    fake.seed_instance(seed)

    streets = np.array(sorted({fake.street_name() for _ in range(STREET_POOL_SIZE)}), dtype=object)
    companies = sorted({_clean_company(fake.company()) for _ in range(COMPANY_POOL_SIZE)})
    domains = [_company_domain(name) for name in companies]
    pins = np.array(
        [
            [
                fake.postcode_in_state(abbr, include_union_territories=abbr in UNION_TERRITORIES)
                for _ in range(PINS_PER_CITY)
            ]
            for _, _, abbr in CITIES
        ],
        dtype=np.int64,
    )
    user_names = []
    while len(user_names) < 60:
        name = f"{fake.first_name()} {fake.last_name()}"
        if _is_plain_name(name) and name not in user_names:
            user_names.append(name)

    ranks = np.arange(len(CITIES), dtype=np.float64)
    weights = 1.0 / (ranks + 3.0) ** 0.9
    return Pools(
        male_first=_name_array(faker_person_in.Provider.first_names_male),
        female_first=_name_array(faker_person_in.Provider.first_names_female),
        last=_name_array(faker_person_in.Provider.last_names),
        streets=streets,
        companies=np.array(companies, dtype=object),
        company_domains=np.array(domains, dtype=object),
        city_names=np.array([c for c, _, _ in CITIES], dtype=object),
        city_states=np.array([s for _, s, _ in CITIES], dtype=object),
        city_weights=weights / weights.sum(),
        city_pins=pins,
        user_names=np.array(user_names, dtype=object),
    )


@lru_cache(maxsize=1)
def mobile_prefixes() -> tuple[np.ndarray, np.ndarray]:
    """4-digit prefixes (6000-9999) libphonenumber treats as mobile-only, with sampling weights."""
    prefixes = [p for p in range(6000, 10000) if _is_mobile_prefix(p)]
    array = np.array(prefixes, dtype=np.int64)
    first_digit = array // 1000
    share = np.array([MOBILE_FIRST_DIGIT_SHARE[int(d)] for d in first_digit])
    counts = np.bincount(first_digit, minlength=10)[first_digit]
    weights = share / counts
    return array, weights / weights.sum()


def _is_mobile_prefix(prefix: int) -> bool:
    for tail in PREFIX_PROBE_TAILS:
        number = phonenumbers.parse(f"{prefix}{tail}", "IN")
        if not phonenumbers.is_valid_number(number):
            return False
        if phonenumbers.number_type(number) != phonenumbers.PhoneNumberType.MOBILE:
            return False
    return True


def _name_array(names: tuple[str, ...] | list[str]) -> np.ndarray:
    return np.array(sorted(n for n in set(names) if _is_plain_name(n)), dtype=object)


def _is_plain_name(name: str) -> bool:
    return re.fullmatch(r"[A-Za-z]+( [A-Za-z]+)*", name) is not None


def _clean_company(name: str) -> str:
    return re.sub(r"\s+", " ", name.replace(",", "")).strip()


def _company_domain(name: str) -> str:
    slug = re.sub(r"[^a-z]", "", name.lower().split(" and ")[0])[:18] or "company"
    return f"{slug}.in"
