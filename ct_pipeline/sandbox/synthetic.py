"""Synthetic Zoho CRM data for Indian fintech, edtech and D2C apps, with the mess real CRMs hold.

`generate_crm(contacts, seed, now)` returns Zoho-shaped Contacts, Leads, Deals and Cases (and the
users who own them) as pandas DataFrames whose columns are Zoho field API names. The same seed
gives identical frames. Everything is sampled with numpy from pools built once per seed with
Faker's `en_IN` locale, so a million contacts take seconds, not hours.

People and records. Each synthetic person (`_person`) has one Indian mobile and one email. A
person becomes one Contact, sometimes two (`contact_duplicate`: half of those pairs hold the
phone in one record and the email in the other; some second records give only an initial,
"R. Sharma"), sometimes also a Lead (`lead_of_contact`, mostly converted), or only a Lead
(`lead_only`). Deals (0-3 per contact) move through `PIPELINES`; Cases (`CASES_PER_CONTACT`
on average) are open or closed at several priorities.

Messy values, at the rates of `MESS_RATES` (each rate is the share of records of that field):
- `mobile`: the Mobile field of Contacts and Leads. About 84% of values are the person's Indian
  mobile in a common clean format (`9876543210`, `+919876543210`, `+91 98765 43210`,
  `98765 43210`); 8% the same number written unusually (`098765-43210`, `919876543210`,
  `0091 98765 43210`, brackets, dots, an extension, full-width digits); the rest are empty,
  landlines with STD codes, foreign numbers with or without `+`, placeholders such as
  `9999999999`, garbage, truncated numbers, or a shared office number.
- `phone`: the Phone field: mostly empty or a landline, sometimes the mobile again or a shared
  office line.
- `email`: case and whitespace noise, empty, syntactically invalid, typo domains, role accounts
  (`info@...`), placeholders (`test@test.com`) and shared office addresses.
- `name_case`, `name_whitespace`, `missing_first_name`: how names are typed.
The kind each record's Mobile, Phone and Email got is kept in `_mobile_kind`, `_phone_kind` and
`_email_kind` (ground truth, like `_person`: the emulator does not serve `_` columns).

Time. `Created_Time` spreads over the `HISTORY_DAYS` before `now`, weighted to recent months;
`import_batch` of records share the second of a bulk import, and `mass_update` of records were
last modified by a mass update at a shared second (incremental readers must cope with ties).
Ids are 19-digit strings, unique across modules, increasing with creation time as Zoho's do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from ct_pipeline.sandbox.synthetic_mess import (
    CLEAN_EMAIL_KINDS,
    EMAIL_KIND_RATES,
    MOBILE_KIND_RATES,
    PERSON_MOBILE_KINDS,
    PHONE_KIND_RATES,
    RenderContext,
    draw_kinds,
    kinds_categorical,
    landlines,
    render_emails,
    render_phones,
)
from ct_pipeline.sandbox.synthetic_pools import Pools, build_pools, mobile_prefixes

MODULES = ("Contacts", "Leads", "Deals", "Cases")

PIPELINES: dict[str, list[str]] = {
    "Personal Loan": ["Document Collection", "Credit Assessment", "Approved", "Disbursed"],
    "Edtech Enrolment": [
        "Counsellor Assigned",
        "Demo Scheduled",
        "Batch Enrolled",
        "EMI Activated",
    ],
    "D2C Order": ["Cart Created", "Checkout Started", "Payment Confirmed", "Delivered"],
}
WON_STAGES = tuple(stages[-1] for stages in PIPELINES.values())
LOST_STAGES = ("Closed Lost", "Rejected")
CLOSED_STAGES = WON_STAGES + LOST_STAGES

OPEN_CASE_STATUSES = ("New", "On Hold", "Escalated")
CLOSED_CASE_STATUS = "Closed"
CASE_PRIORITIES = ("High", "Medium", "Low")

MESS_RATES: dict[str, object] = {
    "mobile": MOBILE_KIND_RATES,
    "phone": PHONE_KIND_RATES,
    "email": EMAIL_KIND_RATES,
    "name_case": 0.04,  # First and Last name in all capitals or all lower case
    "name_whitespace": 0.02,  # a trailing blank after the first name
    "missing_first_name": 0.02,
    "contact_duplicate": 0.03,  # share of Contacts that are a second record of a person
    "duplicate_phone_vs_email": 0.5,  # share of those pairs with the phone in one, email in other
    "duplicate_initial": 0.3,  # share of second records whose first name is only an initial
    "lead_of_contact": 0.30,  # share of contact persons who also have a Lead
    "lead_converted": 0.80,  # share of those Leads marked converted
    "lead_only": 0.25,  # Leads of people who never became a Contact, per Contact
    "import_batch": 0.15,  # records created by a bulk import (shared Created_Time second)
    "mass_update": 0.20,  # records last modified by a mass update (shared Modified_Time second)
}

HISTORY_DAYS = 730
USER_COUNT = 25
SALES_USER_COUNT = 18  # the rest are the support desk, who own the Cases
USER_EMAIL_DOMAIN = "zylker.in"
ID_PREFIX = 5_545_974 * 10**12  # an org's ids share a prefix and then count up
SHARED_OFFICE_PHONES = 4
SHARED_OFFICE_EMAILS = 3
DEALS_PER_CONTACT_SHARE = (0.45, 0.35, 0.15, 0.05)  # 0, 1, 2, 3 deals
CASES_PER_CONTACT = 0.3
ACCOUNTS_PER_CONTACT = 0.01
SECONDS_PER_DAY = 86_400
# What a Contact record holds of its person: the two halves of a "phone in one, email in the
# other" pair, or everything.
WHOLE_RECORD, PHONE_ONLY, EMAIL_ONLY = 0, 1, 2

VERTICALS = ("fintech", "edtech", "d2c")
VERTICAL_SHARE = (0.4, 0.3, 0.3)
VERTICAL_PIPELINE = ("Personal Loan", "Edtech Enrolment", "D2C Order")
PRODUCT_CATEGORIES = (
    ("Personal Loan", "Salary Advance", "Consumer Durable Loan", "Two-Wheeler Loan"),
    ("JEE/NEET Prep", "UPSC Prep", "Data Science", "Spoken English", "Coding Bootcamp"),
    ("Skincare", "Ayurveda", "Apparel", "Home & Kitchen", "Nutrition"),
)
# Median deal size in INR, log-normal spread, bounds and rounding step, per vertical.
DEAL_AMOUNTS = ((200_000, 0.7, 25_000, 2_000_000, 5_000), (45_000, 0.6, 5_000, 300_000, 500))
D2C_AMOUNT = (1_500, 0.8, 199, 25_000)
CASE_SUBJECTS = (
    (
        "EMI auto-debit failed",
        "Loan disbursal delayed",
        "KYC document rejected",
        "Foreclosure charges query",
        "CIBIL score dispute",
        "UPI mandate not working",
    ),
    (
        "Course access not working",
        "Refund for cancelled batch",
        "Live class video buffering",
        "EMI schedule query",
        "Certificate not issued",
        "Counsellor did not call back",
    ),
    (
        "Order not delivered",
        "Wrong item delivered",
        "Refund not received",
        "COD order cancelled",
        "Damaged product",
        "Return pickup missed",
    ),
)
PLANS = ("Free", "Silver", "Gold", "Platinum")
PLAN_SHARE = (0.45, 0.30, 0.18, 0.07)
PLAN_PRICE_INR = ((0, 999, 2_999, 7_999), (0, 4_999, 14_999, 39_999), (0, 499, 1_499, 3_999))
LEAD_SOURCES = (
    "Google Ads",
    "Facebook Ads",
    "Instagram",
    "Referral",
    "App Signup",
    "Website",
    "WhatsApp",
    "Cold Call",
    "Partner",
    "Offline Event",
)
LEAD_SOURCE_SHARE = (0.18, 0.14, 0.1, 0.12, 0.16, 0.12, 0.07, 0.04, 0.04, 0.03)
EMAIL_DOMAINS = (
    "gmail.com",
    "yahoo.co.in",
    "yahoo.com",
    "rediffmail.com",
    "outlook.com",
    "hotmail.com",
    "icloud.com",
    "live.in",
)
EMAIL_DOMAIN_SHARE = (0.65, 0.08, 0.06, 0.04, 0.07, 0.05, 0.03, 0.02)
WORK_EMAIL_SHARE = 0.03


@dataclass(frozen=True, repr=False)
class SyntheticCrm:
    """A generated CRM: one DataFrame per Zoho module, plus the users who own the records."""

    contacts: pd.DataFrame
    leads: pd.DataFrame
    deals: pd.DataFrame
    cases: pd.DataFrame
    users: pd.DataFrame

    def __repr__(self) -> str:
        # Sizes only: the frames hold realistic phones and emails that must stay out of logs.
        sizes = ", ".join(
            f"{name}={len(getattr(self, name))}"
            for name in ("contacts", "leads", "deals", "cases", "users")
        )
        return f"SyntheticCrm({sizes})"

    def module(self, name: str) -> pd.DataFrame:
        """The DataFrame of a Zoho module: "Contacts", "Leads", "Deals" or "Cases"."""
        if name not in MODULES:
            raise ValueError(f"module {name!r} is not generated; use one of {', '.join(MODULES)}")
        return getattr(self, name.lower())


def generate_crm(contacts: int, seed: int = 0, now: datetime | None = None) -> SyntheticCrm:
    """Generate `contacts` Contacts with their Leads, Deals and Cases, deterministic for a seed.

    `now` (tz-aware) bounds every timestamp; it defaults to the start of the current UTC day,
    so two calls with the same seed on the same day return identical frames.
    """
    if contacts < 0:
        raise ValueError(f"contacts must be 0 or more, got {contacts}")
    now_s = _now_seconds(now)
    rng = np.random.default_rng(seed)
    pools = build_pools(seed)
    return _Generator(rng, pools, contacts, now_s).run()


def _now_seconds(now: datetime | None) -> int:
    if now is None:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return int(today.timestamp())
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware, e.g. datetime.now(UTC)")
    return int(now.timestamp())


class _Generator:
    """One generation run: draws people, then records, then ids, then frames."""

    def __init__(self, rng: np.random.Generator, pools: Pools, contacts: int, now_s: int):
        self.rng = rng
        self.pools = pools
        self.n_contacts = contacts
        self.now_s = now_s
        self.start_s = now_s - HISTORY_DAYS * SECONDS_PER_DAY

    def run(self) -> SyntheticCrm:
        self.mass_update_seconds = np.sort(self._shared_seconds(max(5, self.n_contacts // 10_000)))
        self._plan_people()
        self._make_people()
        self._make_shared_values()
        self._make_users_and_accounts()
        self._plan_contacts()
        self._plan_leads()
        self._plan_deals()
        self._plan_cases()
        self._assign_ids()
        return SyntheticCrm(
            contacts=self._contacts_frame(),
            leads=self._leads_frame(),
            deals=self._deals_frame(),
            cases=self._cases_frame(),
            users=self._users_frame(),
        )

    # People -----------------------------------------------------------------------------

    def _plan_people(self) -> None:
        rng, n = self.rng, self.n_contacts
        n_dup = min(round(n * MESS_RATES["contact_duplicate"]), n // 2)
        n_contact_people = n - n_dup
        duplicated = rng.choice(n_contact_people, n_dup, replace=False)
        person = np.concatenate([np.arange(n_contact_people), duplicated])

        role = np.full(n, WHOLE_RECORD, dtype=np.int8)
        split = rng.random(n_dup) < MESS_RATES["duplicate_phone_vs_email"]
        role[duplicated[split]] = PHONE_ONLY
        role[n_contact_people + np.flatnonzero(split)] = EMAIL_ONLY

        n_lead_contacts = round(n_contact_people * MESS_RATES["lead_of_contact"])
        n_lead_only = round(n * MESS_RATES["lead_only"])
        lead_person = np.concatenate(
            [
                rng.choice(n_contact_people, n_lead_contacts, replace=False),
                n_contact_people + np.arange(n_lead_only),
            ]
        )
        converted = np.zeros(len(lead_person), dtype=bool)
        converted[:n_lead_contacts] = rng.random(n_lead_contacts) < MESS_RATES["lead_converted"]

        self.contact_person = person
        self.contact_role = role
        self.contact_is_twin = np.arange(n) >= n_contact_people
        self.lead_person = lead_person
        self.lead_converted = converted
        self.n_people = n_contact_people + n_lead_only
        self.n_contact_people = n_contact_people

    def _make_people(self) -> None:
        rng, pools, n = self.rng, self.pools, self.n_people
        female = rng.random(n) < 0.45
        males = len(pools.male_first)
        self.first_names = np.concatenate([pools.male_first, pools.female_first])
        self.first = np.where(
            female,
            males + rng.integers(0, len(pools.female_first), n),
            rng.integers(0, males, n),
        ).astype(np.int32)
        self.last = rng.integers(0, len(pools.last), n).astype(np.int32)
        self.female = female
        first = _pick_text(self.first_names, self.first)
        last = _pick_text(pools.last, self.last)
        self.mobile = _unique_mobiles(rng, n + SHARED_OFFICE_PHONES)
        self.vertical = rng.choice(len(VERTICALS), n, p=VERTICAL_SHARE).astype(np.int8)
        self.city = rng.choice(len(pools.city_names), n, p=pools.city_weights).astype(np.int16)
        self.email, self.secondary_email = _person_emails(rng, pools, first, last)

    def _make_shared_values(self) -> None:
        rng, pools = self.rng, self.pools
        office_mobiles = self.mobile[self.n_people :]
        self.mobile = self.mobile[: self.n_people]
        shared_phones = np.concatenate(
            [
                landlines(rng, SHARED_OFFICE_PHONES - 2).to_numpy(dtype=object),
                np.array([f"+91 {m // 10**5} {m % 10**5:05d}" for m in office_mobiles[:2]]),
            ]
        )
        domains = pools.company_domains[rng.choice(len(pools.company_domains), 3, replace=False)]
        shared_emails = np.array(
            [
                f"{box}@{domain}"
                for box, domain in zip(("reception", "accounts", "hello"), domains, strict=True)
            ]
        )[:SHARED_OFFICE_EMAILS]
        self.render_context = RenderContext(shared_phones, shared_emails, pools.company_domains)

    def _make_users_and_accounts(self) -> None:
        names = self.pools.user_names[:USER_COUNT]
        self.user_names = names
        self.user_emails = np.array(
            [f"{n.lower().replace(' ', '.')}@{USER_EMAIL_DOMAIN}" for n in names], dtype=object
        )
        n_accounts = max(5, round(self.n_contacts * ACCOUNTS_PER_CONTACT))
        suffixes = ("Pvt Ltd", "Private Limited", "LLP", "Technologies", "Enterprises", "Traders")
        companies = self.pools.companies
        names_needed = [
            f"{companies[i % len(companies)]} {suffixes[(i // len(companies)) % len(suffixes)]}"
            for i in self.rng.permutation(len(companies) * len(suffixes))[:n_accounts]
        ]
        self.account_names = np.array(names_needed, dtype=object)

    # Records ----------------------------------------------------------------------------

    def _plan_contacts(self) -> None:
        rng, n = self.rng, self.n_contacts
        created = self._created_times(n)
        order = np.argsort(created, kind="stable")
        self.contact_person = self.contact_person[order]
        self.contact_role = self.contact_role[order]
        self.contact_is_twin = self.contact_is_twin[order]
        self.contact_created = created[order]
        self.contact_modified = self._modified_times(self.contact_created)
        vertical = self.vertical[self.contact_person]

        account_type = _draw_per_vertical(
            rng,
            vertical,
            labels=3,
            shares=((0.80, 0.18, 0.02), (0.35, 0.05, 0.60), (0.92, 0.08, 0.0)),
        )
        has_account = rng.random(n) < np.choose(account_type, (0.04, 0.85, 0.02))
        account = _zipf_choice(rng, len(self.account_names), n)
        self.contact_account_type = account_type
        self.contact_account = np.where(has_account, account, -1)
        self.contact_owner = _zipf_choice(rng, SALES_USER_COUNT, n)
        initial_only = self.contact_is_twin & (rng.random(n) < MESS_RATES["duplicate_initial"])
        self.contact_names = self._names(self.contact_person, initial_only)
        self.contact_full_names = pa.array(self.contact_names[2])

    def _plan_leads(self) -> None:
        rng = self.rng
        person = self.lead_person
        n = len(person)
        created = self._created_times(n)

        # A converted person's Lead predates their first Contact record.
        first_contact = np.full(self.n_people, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first_contact, self.contact_person, self.contact_created)
        of_contact = person < self.n_contact_people
        contact_time = first_contact[person[of_contact]]
        lead_gap = rng.exponential(12 * SECONDS_PER_DAY, of_contact.sum()).astype(np.int64)
        created[of_contact] = contact_time - lead_gap

        order = np.argsort(created, kind="stable")
        self.lead_person = person[order]
        self.lead_converted = self.lead_converted[order]
        self.lead_created = created[order]
        modified = self._modified_times(self.lead_created)
        conversion = first_contact[np.minimum(self.lead_person, self.n_people - 1)]
        converted = self.lead_converted
        modified[converted] = np.maximum(modified[converted], conversion[converted])
        self.lead_modified = np.minimum(modified, self.now_s)
        self.lead_owner = _zipf_choice(rng, SALES_USER_COUNT, n)

    def _plan_deals(self) -> None:
        rng = self.rng
        counts = rng.choice(
            len(DEALS_PER_CONTACT_SHARE), self.n_contacts, p=DEALS_PER_CONTACT_SHARE
        )
        contact = np.repeat(np.arange(self.n_contacts), counts)
        gap = rng.exponential(45 * SECONDS_PER_DAY, len(contact)).astype(np.int64)
        created = np.minimum(self.contact_created[contact] + gap, self.now_s)
        order = np.argsort(created, kind="stable")
        self.deal_contact = contact[order]
        self.deal_created = created[order]
        self.deal_modified = self._modified_times(self.deal_created)
        owner = self.contact_owner[self.deal_contact]
        reassigned = rng.random(len(owner)) < 0.15
        self.deal_owner = np.where(
            reassigned, _zipf_choice(rng, SALES_USER_COUNT, len(owner)), owner
        )

    def _plan_cases(self) -> None:
        rng = self.rng
        counts = rng.poisson(CASES_PER_CONTACT, self.n_contacts)
        contact = np.repeat(np.arange(self.n_contacts), counts)
        gap = rng.exponential(120 * SECONDS_PER_DAY, len(contact)).astype(np.int64)
        created = np.minimum(self.contact_created[contact] + gap, self.now_s)
        order = np.argsort(created, kind="stable")
        self.case_contact = contact[order]
        self.case_created = created[order]
        self.case_modified = self._modified_times(self.case_created)
        support = USER_COUNT - SALES_USER_COUNT
        self.case_owner = SALES_USER_COUNT + rng.integers(0, support, len(contact))

    def _assign_ids(self) -> None:
        """Give every record a unique 19-digit id that grows with its creation time."""
        before = self.start_s - 400 * SECONDS_PER_DAY
        parts = [
            np.full(USER_COUNT, before, dtype=np.int64),
            np.full(len(self.account_names), before + 1, dtype=np.int64),
            self.contact_created,
            self.lead_created,
            self.deal_created,
            self.case_created,
        ]
        created = np.concatenate(parts)
        order = np.argsort(created, kind="stable")
        steps = self.rng.integers(1, 12, len(created), dtype=np.int64)
        ids = np.empty(len(created), dtype=np.int64)
        ids[order] = ID_PREFIX + 100_000 + np.cumsum(steps)
        bounds = np.cumsum([0] + [len(p) for p in parts])
        as_text = pa.array(ids).cast(pa.large_string())
        (
            self.user_ids,
            self.account_ids,
            self.contact_ids,
            self.lead_ids,
            self.deal_ids,
            self.case_ids,
        ) = (as_text.slice(bounds[i], bounds[i + 1] - bounds[i]) for i in range(len(parts)))

    # Time -------------------------------------------------------------------------------

    def _created_times(self, n: int) -> np.ndarray:
        rng = self.rng
        span = self.now_s - self.start_s
        # u**0.75 leans towards recent months: the apps are growing.
        created = self.start_s + (rng.random(n) ** 0.75 * span).astype(np.int64)
        imports = self._shared_seconds(max(3, n // 20_000))
        imported = rng.random(n) < MESS_RATES["import_batch"]
        created[imported] = imports[rng.integers(0, len(imports), imported.sum())]
        return created

    def _modified_times(self, created: np.ndarray) -> np.ndarray:
        rng = self.rng
        n = len(created)
        draw = rng.random(n)
        modified = created.copy()
        edited = draw >= 0.35
        gap = rng.exponential(60 * SECONDS_PER_DAY, n).astype(np.int64)
        modified[edited] = np.minimum(created[edited] + gap[edited], self.now_s)

        mass = np.flatnonzero(draw >= 1.0 - MESS_RATES["mass_update"])
        updates = self.mass_update_seconds
        position = np.searchsorted(updates, created[mass], side="left")
        available = len(updates) - position
        pick = position + (rng.random(len(mass)) * available).astype(np.int64)
        usable = available > 0
        modified[mass[usable]] = updates[pick[usable]]
        return modified

    def _shared_seconds(self, count: int) -> np.ndarray:
        span = self.now_s - self.start_s
        return self.start_s + self.rng.integers(0, span, count, dtype=np.int64)

    # Frames -----------------------------------------------------------------------------

    def _contacts_frame(self) -> pd.DataFrame:
        rng, pools = self.rng, self.pools
        person = self.contact_person
        n = len(person)
        role = self.contact_role

        mobile_kind = draw_kinds(rng, MOBILE_KIND_RATES, n)
        email_kind = draw_kinds(rng, EMAIL_KIND_RATES, n)
        phone_kind = draw_kinds(rng, PHONE_KIND_RATES, n)
        mobile_codes = list(MOBILE_KIND_RATES)
        email_codes = list(EMAIL_KIND_RATES)
        person_mobile = np.isin(mobile_kind, [mobile_codes.index(k) for k in PERSON_MOBILE_KINDS])
        mobile_kind[(role == PHONE_ONLY) & ~person_mobile] = mobile_codes.index("plain")
        mobile_kind[role == EMAIL_ONLY] = mobile_codes.index("empty")
        clean_email = np.isin(email_kind, [email_codes.index(k) for k in CLEAN_EMAIL_KINDS])
        email_kind[role == PHONE_ONLY] = email_codes.index("empty")
        email_kind[(role == EMAIL_ONLY) & ~clean_email] = email_codes.index("clean")

        first, last, full = self.contact_names
        city = self.city[person]
        vertical = self.vertical[person]
        plan, value, tier, subscription = self._subscriptions(vertical)
        lifecycle = _labels(
            rng.choice(6, n, p=(0.12, 0.40, 0.18, 0.12, 0.12, 0.06)),
            ("Onboarding", "Active", "Engaged", "At Risk", "Churned", "Reactivated"),
        )
        stage = lifecycle.to_numpy()
        uninstall_share = np.select([stage == "Churned", stage == "At Risk"], [0.6, 0.25], 0.05)
        purchased = rng.random(n) < np.where(plan.to_numpy() == "Free", 0.2, 0.9)
        purchase_day = _day_between(rng, self.contact_created, self.now_s)
        birth_day = (self.now_s // SECONDS_PER_DAY) - rng.integers(18 * 365, 60 * 365, n)
        account = self.contact_account
        columns = {
            "id": _text(self.contact_ids),
            "Salutation": _salutations(rng, self.female[person]),
            "First_Name": first,
            "Last_Name": last,
            "Full_Name": full,
            "Email": render_emails(
                rng, email_kind, EMAIL_KIND_RATES, self.email.take(person), self.render_context
            ),
            "Secondary_Email": _masked(
                self.secondary_email.take(person).reset_index(drop=True), rng.random(n) < 0.12
            ),
            "Phone": self._phones(person, phone_kind, PHONE_KIND_RATES),
            "Mobile": render_phones(
                rng, mobile_kind, MOBILE_KIND_RATES, self.mobile[person], self.render_context
            ),
            "Mailing_Street": _masked(_streets(rng, pools, n), rng.random(n) < 0.9),
            "Mailing_City": _pick_text(pools.city_names, _keep(city, rng.random(n) < 0.95)),
            "Mailing_State": _pick_text(pools.city_states, _keep(city, rng.random(n) < 0.93)),
            "Mailing_Zip": _masked(
                _text(pools.city_pins[city, rng.integers(0, pools.city_pins.shape[1], n)]),
                rng.random(n) < 0.92,
            ),
            "Mailing_Country": _labels(
                rng.choice(3, n, p=(0.96, 0.02, 0.02)), ("India", "IN", None)
            ),
            "Date_of_Birth": _date_text(birth_day, rng.random(n) < 0.55),
            "Lead_Source": _labels(
                rng.choice(len(LEAD_SOURCES), n, p=LEAD_SOURCE_SHARE), LEAD_SOURCES
            ),
            "Account_Type": _labels(
                self.contact_account_type, ("Individual", "Business", "Student")
            ),
            "Subscription_Plan": plan,
            "Subscription_Value_INR": value,
            "Customer_Tier": tier,
            "KYC_Status": _labels(
                rng.choice(4, n, p=(0.62, 0.30, 0.05, 0.03)),
                ("Verified", "Pending", "Rejected", None),
            ),
            "Lifecycle_Stage": lifecycle,
            "Subscription_Status": subscription,
            "App_Uninstalled": rng.random(n) < uninstall_share,
            "Last_Purchase_Date": _date_text(purchase_day, purchased),
            "Email_Opt_Out": rng.random(n) < 0.08,
            **self._owner_columns(self.contact_owner),
            **self._lookup("Account_Name", account, self.account_ids, self.account_names),
            "Created_Time": _timestamps(self.contact_created),
            "Modified_Time": _timestamps(self.contact_modified),
            "_person": person.astype(np.int64),
            "_mobile_kind": kinds_categorical(mobile_kind, MOBILE_KIND_RATES),
            "_phone_kind": kinds_categorical(phone_kind, PHONE_KIND_RATES),
            "_email_kind": kinds_categorical(email_kind, EMAIL_KIND_RATES),
        }
        return pd.DataFrame(columns)

    def _leads_frame(self) -> pd.DataFrame:
        rng, pools = self.rng, self.pools
        person = self.lead_person
        n = len(person)
        mobile_kind = draw_kinds(rng, MOBILE_KIND_RATES, n)
        email_kind = draw_kinds(rng, EMAIL_KIND_RATES, n)
        phone_kind = draw_kinds(rng, PHONE_KIND_RATES, n)
        first, last, full = self._names(person)
        city = self.city[person]
        converted = self.lead_converted
        status = _labels(
            rng.choice(7, n, p=(0.22, 0.2, 0.1, 0.18, 0.1, 0.08, 0.12)),
            (
                "Not Contacted",
                "Attempted to Contact",
                "Contact in Future",
                "Contacted",
                "Junk Lead",
                "Lost Lead",
                "Pre-Qualified",
            ),
        )
        status = status.where(~converted, "Pre-Qualified")
        company_kind = rng.choice(3, n, p=(0.3, 0.4, 0.3))
        company = _pick_text(pools.companies, rng.integers(0, len(pools.companies), n))
        company = company.where(company_kind == 0, None)
        company = company.where(company_kind != 2, "Individual")
        columns = {
            "id": _text(self.lead_ids),
            "First_Name": first,
            "Last_Name": last,
            "Full_Name": full,
            "Email": render_emails(
                rng, email_kind, EMAIL_KIND_RATES, self.email.take(person), self.render_context
            ),
            "Phone": self._phones(person, phone_kind, PHONE_KIND_RATES),
            "Mobile": render_phones(
                rng, mobile_kind, MOBILE_KIND_RATES, self.mobile[person], self.render_context
            ),
            "Company": company,
            "Lead_Status": status,
            "Lead_Source": _labels(
                rng.choice(len(LEAD_SOURCES), n, p=LEAD_SOURCE_SHARE), LEAD_SOURCES
            ),
            "City": _pick_text(pools.city_names, _keep(city, rng.random(n) < 0.85)),
            "State": _pick_text(pools.city_states, _keep(city, rng.random(n) < 0.8)),
            "Country": _labels(rng.choice(3, n, p=(0.9, 0.02, 0.08)), ("India", "IN", None)),
            "Converted__s": converted.copy(),
            **self._owner_columns(self.lead_owner),
            "Created_Time": _timestamps(self.lead_created),
            "Modified_Time": _timestamps(self.lead_modified),
            "_person": person.astype(np.int64),
            "_mobile_kind": kinds_categorical(mobile_kind, MOBILE_KIND_RATES),
            "_phone_kind": kinds_categorical(phone_kind, PHONE_KIND_RATES),
            "_email_kind": kinds_categorical(email_kind, EMAIL_KIND_RATES),
        }
        return pd.DataFrame(columns)

    def _deals_frame(self) -> pd.DataFrame:
        rng = self.rng
        contact = self.deal_contact
        n = len(contact)
        vertical = self.vertical[self.contact_person[contact]]

        outcome = rng.choice(3, n, p=(0.45, 0.35, 0.20))  # open, won, lost
        stage_count = np.array([len(PIPELINES[p]) for p in VERTICAL_PIPELINE])[vertical]
        open_step = (rng.random(n) * (stage_count - 1)).astype(np.int64)
        step = np.where(outcome == 1, stage_count - 1, open_step)
        width = int(stage_count.max(initial=1))
        stage_table = [
            stage
            for pipeline in VERTICAL_PIPELINE
            for stage in (PIPELINES[pipeline] + [PIPELINES[pipeline][-1]] * width)[:width]
        ] + list(LOST_STAGES)
        stage = vertical.astype(np.int64) * width + step
        lost = outcome == 2
        # Lenders reject; learners and shoppers mostly just go cold.
        rejected = rng.random(n) < np.where(vertical == 0, 0.7, 0.15)
        lost_stage = width * len(VERTICAL_PIPELINE) + np.where(rejected, 1, 0)
        stage = np.where(lost, lost_stage, stage)
        probability = np.where(
            outcome == 1, 100.0, np.where(lost, 0.0, np.round(100 * (step + 1) / (stage_count + 1)))
        )

        category_index = rng.random(n) * np.array([len(c) for c in PRODUCT_CATEGORIES])[vertical]
        category = _category_labels(vertical, category_index.astype(np.int64))
        closing_day = np.where(
            outcome == 0,
            (self.deal_created // SECONDS_PER_DAY) + rng.integers(7, 120, n),
            self.deal_modified // SECONDS_PER_DAY,
        )
        account = self.contact_account[contact]
        columns = {
            "id": _text(self.deal_ids),
            "Deal_Name": _pick_text(self.contact_full_names, contact) + " - " + category,
            "Pipeline": _pick_text(VERTICAL_PIPELINE, vertical),
            "Stage": _pick_text(stage_table, stage),
            "Amount": _deal_amounts(rng, vertical),
            "Closing_Date": _date_text(closing_day, rng.random(n) < 0.97),
            "Probability": probability.astype(np.float64),
            "Product_Category": category,
            "Type": _labels(rng.choice(2, n, p=(0.7, 0.3)), ("New Business", "Existing Business")),
            "Lead_Source": _labels(
                rng.choice(len(LEAD_SOURCES), n, p=LEAD_SOURCE_SHARE), LEAD_SOURCES
            ),
            **self._lookup("Contact_Name", contact, self.contact_ids, self.contact_full_names),
            **self._lookup("Account_Name", account, self.account_ids, self.account_names),
            **self._owner_columns(self.deal_owner),
            "Created_Time": _timestamps(self.deal_created),
            "Modified_Time": _timestamps(self.deal_modified),
        }
        return pd.DataFrame(columns)

    def _cases_frame(self) -> pd.DataFrame:
        rng = self.rng
        contact = self.case_contact
        n = len(contact)
        vertical = self.vertical[self.contact_person[contact]]
        statuses = OPEN_CASE_STATUSES + (CLOSED_CASE_STATUS,)
        status_code = rng.choice(4, n, p=(0.18, 0.08, 0.14, 0.60))
        priority_code = rng.choice(3, n, p=(0.25, 0.50, 0.25))
        escalated = status_code == statuses.index("Escalated")
        priority_code[escalated & (rng.random(n) < 0.7)] = CASE_PRIORITIES.index("High")
        subject_index = rng.integers(0, len(CASE_SUBJECTS[0]), n)
        subjects = [subject for by_vertical in CASE_SUBJECTS for subject in by_vertical]
        width = len(CASE_SUBJECTS[0])
        columns = {
            "id": _text(self.case_ids),
            "Case_Number": pd.Series(np.arange(100_001, 100_001 + n), copy=False).astype("str"),
            "Subject": _pick_text(subjects, vertical.astype(np.int64) * width + subject_index),
            "Status": _labels(status_code, statuses),
            "Priority": _labels(priority_code, CASE_PRIORITIES),
            "Case_Origin": _labels(
                rng.choice(5, n, p=(0.3, 0.3, 0.15, 0.15, 0.1)),
                ("Phone", "Email", "Web", "WhatsApp", "Chat"),
            ),
            "Type": _labels(
                rng.choice(3, n, p=(0.55, 0.35, 0.1)), ("Problem", "Question", "Feature Request")
            ),
            **self._lookup("Related_To", contact, self.contact_ids, self.contact_full_names),
            **self._owner_columns(self.case_owner),
            "Created_Time": _timestamps(self.case_created),
            "Modified_Time": _timestamps(self.case_modified),
        }
        return pd.DataFrame(columns)

    def _users_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "id": _text(self.user_ids),
                "name": _text(self.user_names),
                "email": _text(self.user_emails),
            }
        )

    # Frame helpers ----------------------------------------------------------------------

    def _names(
        self, person: np.ndarray, initial_only: np.ndarray | None = None
    ) -> tuple[pd.Series, pd.Series, pd.Series]:
        """First, Last and Full name as typed: case noise, stray blanks, missing first names."""
        rng = self.rng
        n = len(person)
        first = _pick_text(self.first_names, self.first[person])
        last = _pick_text(self.pools.last, self.last[person])
        if initial_only is not None:
            first = first.where(~initial_only, first.str.slice(0, 1) + ".")
        case = rng.random(n)
        upper = case < MESS_RATES["name_case"] / 2
        lower = (case >= MESS_RATES["name_case"] / 2) & (case < MESS_RATES["name_case"])
        first = first.where(~upper, first.str.upper()).where(~lower, first.str.lower())
        last = last.where(~upper, last.str.upper()).where(~lower, last.str.lower())
        first = first.where(rng.random(n) >= MESS_RATES["name_whitespace"], first + " ")
        first = first.where(rng.random(n) >= MESS_RATES["missing_first_name"], None)
        full = (first.str.strip() + " " + last).fillna(last)
        return first, last, full

    def _phones(self, person: np.ndarray, codes: np.ndarray, rates: dict[str, float]) -> pd.Series:
        return render_phones(self.rng, codes, rates, self.mobile[person], self.render_context)

    def _subscriptions(
        self, vertical: np.ndarray
    ) -> tuple[pd.Series, np.ndarray, pd.Series, pd.Series]:
        rng = self.rng
        n = len(vertical)
        plan_code = rng.choice(len(PLANS), n, p=PLAN_SHARE)
        price = np.array(PLAN_PRICE_INR, dtype=np.float64)[vertical, plan_code]
        discount = np.array([1.0, 1.0, 0.9, 0.8, 0.5])[rng.integers(0, 5, n)]
        value = np.round(price * discount)
        value[rng.random(n) < 0.03] = np.nan
        vip = ((plan_code == 3) & (rng.random(n) < 0.5)) | (
            (plan_code == 2) & (rng.random(n) < 0.05)
        )
        premium = (plan_code >= 2) | ((plan_code == 1) & (rng.random(n) < 0.2))
        tier_code = np.where(vip, 2, np.where(premium, 1, 0))
        paid_status = rng.choice(4, n, p=(0.7, 0.1, 0.12, 0.08))
        free_status = np.where(rng.random(n) < 0.4, 4, -1)
        status_code = np.where(plan_code == 0, free_status, paid_status)
        return (
            _labels(plan_code, PLANS),
            value,
            _labels(tier_code, ("Standard", "Premium", "VIP")),
            _labels(status_code, ("Active", "Cancelled", "Expired", "Paused", "Trial")),
        )

    def _owner_columns(self, owner: np.ndarray) -> dict[str, pd.Series]:
        return {
            "Owner.id": _pick_text(self.user_ids, owner),
            "Owner.name": _pick_text(self.user_names, owner),
            "Owner.email": _pick_text(self.user_emails, owner),
        }

    def _lookup(
        self, field: str, index: np.ndarray, ids: pa.Array, names: pa.Array | np.ndarray
    ) -> dict[str, pd.Series]:
        return {f"{field}.id": _pick_text(ids, index), f"{field}.name": _pick_text(names, index)}


def _unique_mobiles(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` distinct 10-digit Indian mobile numbers, as int64."""
    prefixes, weights = mobile_prefixes()
    placeholders = np.array([9_876_543_210, 9_999_999_999], dtype=np.int64)
    numbers = np.empty(0, dtype=np.int64)
    while len(numbers) < count:
        draw = count - len(numbers) + count // 100 + 16
        fresh = prefixes[rng.choice(len(prefixes), draw, p=weights)] * 10**6 + rng.integers(
            0, 10**6, draw
        )
        numbers = np.concatenate([numbers, fresh[~np.isin(fresh, placeholders)]])
        _, first_seen = np.unique(numbers, return_index=True)
        numbers = numbers[np.sort(first_seen)]
    return numbers[:count]


def _person_emails(
    rng: np.random.Generator, pools: Pools, first: pd.Series, last: pd.Series
) -> tuple[pd.Series, pd.Series]:
    """Each person's canonical and secondary email, unique across people by construction.

    Names hold no digits, and every local part ends (or, for secondary addresses, has in its
    middle) the person's own number, so two people can never share an address.
    """
    n = len(first)
    f = first.str.lower().str.replace(" ", "", regex=False)
    la = last.str.lower().str.replace(" ", "", regex=False)
    tag = pd.Series(rng.permutation(n) + 1, copy=False).astype("str")
    style = rng.integers(0, 5, n)
    local = f + "." + la + tag
    local = local.where(style != 1, f + la + tag)
    local = local.where(style != 2, f + "_" + tag)
    local = local.where(style != 3, f.str.slice(0, 1) + la + tag)
    local = local.where(style != 4, la + "." + f + tag)
    domain = _pick_text(EMAIL_DOMAINS, rng.choice(len(EMAIL_DOMAINS), n, p=EMAIL_DOMAIN_SHARE))
    work = rng.random(n) < WORK_EMAIL_SHARE
    work_domain = _pick_text(pools.company_domains, rng.integers(0, len(pools.company_domains), n))
    domain = domain.where(~work, work_domain)
    other_domain = _pick_text(
        EMAIL_DOMAINS, rng.choice(len(EMAIL_DOMAINS), n, p=EMAIL_DOMAIN_SHARE)
    )
    return local + "@" + domain, f + "." + tag + "." + la + "@" + other_domain


def _streets(rng: np.random.Generator, pools: Pools, n: int) -> pd.Series:
    number = pd.Series(rng.integers(1, 999, n), copy=False).astype("str")
    block = pd.Series(rng.integers(1, 99, n), copy=False).astype("str")
    style = rng.integers(0, 4, n)
    building = ("H.No. " + number).where(style == 0, number)
    building = building.where(style != 2, block + "/" + number)
    building = building.where(style != 3, "Flat " + number)
    return building + ", " + _pick_text(pools.streets, rng.integers(0, len(pools.streets), n))


def _salutations(rng: np.random.Generator, female: np.ndarray) -> pd.Series:
    n = len(female)
    male_code = rng.choice(3, n, p=(0.55, 0.05, 0.40))  # Mr., Dr., none
    female_code = rng.choice(4, n, p=(0.3, 0.25, 0.05, 0.40))  # Ms., Mrs., Dr., none
    labels = np.array(["Mr.", "Dr.", None, "Ms.", "Mrs.", "Dr.", None], dtype=object)
    return _pick_text(labels, np.where(female, 3 + female_code, male_code))


def _deal_amounts(rng: np.random.Generator, vertical: np.ndarray) -> np.ndarray:
    n = len(vertical)
    amount = np.empty(n, dtype=np.float64)
    for v, (median, sigma, low, high, step) in enumerate(DEAL_AMOUNTS):
        rows = vertical == v
        raw = rng.lognormal(np.log(median), sigma, rows.sum()).clip(low, high)
        amount[rows] = np.round(raw / step) * step
    rows = vertical == 2
    median, sigma, low, high = D2C_AMOUNT
    raw = rng.lognormal(np.log(median), sigma, rows.sum()).clip(low, high)
    amount[rows] = np.maximum(np.round(raw / 100) * 100 - 1, low)  # prices end in 99
    amount[rng.random(n) < 0.02] = np.nan
    return amount


def _category_labels(vertical: np.ndarray, index: np.ndarray) -> pd.Series:
    width = max(len(c) for c in PRODUCT_CATEGORIES)
    table = [name for c in PRODUCT_CATEGORIES for name in list(c) + [c[0]] * (width - len(c))]
    return _pick_text(table, vertical.astype(np.int64) * width + index)


def _draw_per_vertical(
    rng: np.random.Generator,
    vertical: np.ndarray,
    labels: int,
    shares: tuple[tuple[float, ...], ...],
) -> np.ndarray:
    cumulative = np.cumsum(np.array(shares), axis=1)[vertical]
    draw = rng.random(len(vertical))[:, None]
    return np.minimum((draw >= cumulative).sum(axis=1), labels - 1).astype(np.int8)


def _zipf_choice(rng: np.random.Generator, size: int, n: int) -> np.ndarray:
    weights = 1.0 / np.sqrt(np.arange(1, size + 1))
    return rng.choice(size, n, p=weights / weights.sum())


def _day_between(rng: np.random.Generator, start_s: np.ndarray, end_s: int) -> np.ndarray:
    span = np.maximum(end_s - start_s, 1)
    return (start_s + (rng.random(len(start_s)) * span).astype(np.int64)) // SECONDS_PER_DAY


def _pick_text(pool: pa.Array | np.ndarray | tuple | list, index: np.ndarray) -> pd.Series:
    """A text column taking `pool[index]` per row; an index of -1 (or a None in the pool) is null.

    Arrow's take does this without a Python string per row, which is what keeps a million
    rows fast.
    """
    if not isinstance(pool, pa.Array):
        pool = pa.array(list(pool), type=pa.large_string())
    index = np.asarray(index, dtype=np.int64)
    taken = pool.take(pa.array(index, mask=index < 0))
    return pd.Series(taken.cast(pa.large_string()), dtype="str")


def _labels(codes: np.ndarray, labels: tuple) -> pd.Series:
    """Codes into a text column; a code of -1 or a None label is null."""
    return _pick_text(labels, codes)


def _keep(index: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return np.where(keep, index, -1)


def _text(values: pa.Array | np.ndarray | list) -> pd.Series:
    if isinstance(values, pa.Array):
        return pd.Series(values.cast(pa.large_string()), dtype="str")
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        return pd.Series(pa.array(values).cast(pa.large_string()), dtype="str")
    return pd.Series(pa.array(list(values), type=pa.large_string()), dtype="str")


def _masked(values: pd.Series, keep: np.ndarray) -> pd.Series:
    return values.reset_index(drop=True).where(keep, None)


def _date_text(days: np.ndarray, present: np.ndarray) -> pd.Series:
    dates = pa.array(days.astype("datetime64[D]"), mask=~np.asarray(present, dtype=bool))
    return pd.Series(dates.cast(pa.large_string()), dtype="str")


def _timestamps(seconds: np.ndarray) -> pd.Series:
    return pd.Series(seconds.astype("datetime64[s]").astype("datetime64[ns]")).dt.tz_localize("UTC")
