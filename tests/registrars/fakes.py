"""Porkbun's and Namecheap's APIs faked at the HTTP boundary, on loopback, from
their public documents: Porkbun's JSON API v3 (every call a POST with the key
pair in the JSON body; `{"status": "SUCCESS"|"ERROR", ...}`) and Namecheap's XML
API (form fields with ApiUser, ApiKey, UserName, ClientIp, Command; an
`ApiResponse` with Status OK or ERROR). Each records every request it gets.

    with FakePorkbun() as porkbun:
        porkbun.set_name("brand.com", avail="no")
        porkbun.hold_creates()            # a create is carried out, its answer held
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

from tests.servers.http_fake import FakeHandler, LoopbackHttpFake

PORKBUN_KEY = "pk1_test_key"
PORKBUN_SECRET = "sk1_test_secret"
NAMECHEAP_USER = "mailfleet-test"
NAMECHEAP_KEY = "nc_test_key_0123456789"
NAMECHEAP_IP = "192.0.2.10"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class _FakeBase(LoopbackHttpFake):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[Recorded] = []
        self.lock = threading.RLock()


@dataclass
class PorkbunName:
    avail: str = "yes"
    price: str | None = None
    premium: str = "no"


class FakePorkbun(_FakeBase):
    def __init__(self) -> None:
        super().__init__()
        self.pricing = {"com": "9.68", "io": "28.12", "co": "11.50", "net": "11.48"}
        self.names: dict[str, PorkbunName] = {}
        self.owned: set[str] = set()
        self.nameservers: dict[str, list[str]] = {}
        self.check_limit = 100
        self.checks_used = 0
        self._hold = threading.Event()
        self._hold.set()
        self.create_arrived = threading.Event()

    def __enter__(self) -> FakePorkbun:
        super().__enter__()
        return self

    def set_name(self, name: str, **fields: str) -> None:
        self.names[name] = PorkbunName(**fields)

    def hold_creates(self) -> None:
        """Carry creates out but hold their answers until `release_creates`."""
        self._hold.clear()

    def release_creates(self) -> None:
        self._hold.set()

    def posts(self, prefix: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def _price(self, name: str) -> str:
        entry = self.names.get(name)
        if entry and entry.price:
            return entry.price
        return self.pricing[name.rsplit(".", 1)[1]]

    def _handle(self, handler: FakeHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        path = urllib.parse.urlsplit(handler.path).path
        request = Recorded(
            handler.command, path, {k.lower(): v for k, v in handler.headers.items()}, body
        )
        with self.lock:
            self.requests.append(request)
        status, answer = self._answer(request)
        if path.startswith("/domain/create/") and status == 200:
            self.create_arrived.set()
            self._hold.wait()
        self._send(handler, status, json.dumps(answer).encode(), "application/json")

    def _answer(self, request: Recorded) -> tuple[int, dict[str, Any]]:
        body, path = request.body, request.path
        if request.method != "POST":
            return 405, {"status": "ERROR", "message": "Method not allowed"}
        if path == "/pricing/get":
            return 200, {
                "status": "SUCCESS",
                "pricing": {
                    tld: {"registration": price, "renewal": price, "transfer": price}
                    for tld, price in self.pricing.items()
                },
            }
        if body.get("apikey") != PORKBUN_KEY or body.get("secretapikey") != PORKBUN_SECRET:
            return 400, {"status": "ERROR", "message": "Invalid API key. (002)"}
        parts = path.strip("/").split("/")
        if parts[:2] == ["domain", "checkDomain"] and len(parts) == 3:
            name = parts[2]
            with self.lock:
                if self.checks_used >= self.check_limit:
                    return 503, {"status": "ERROR", "message": "Rate limit exceeded."}
                self.checks_used += 1
                used = self.checks_used
            entry = self.names.get(name, PorkbunName())
            avail = "no" if name in self.owned else entry.avail
            price = self._price(name)
            return 200, {
                "status": "SUCCESS",
                "response": {
                    "avail": avail,
                    "type": "registration",
                    "price": price,
                    "firstYearPromo": "no",
                    "regularPrice": price,
                    "premium": entry.premium,
                    "additional": {
                        "renewal": {"type": "renewal", "price": price, "regularPrice": price},
                        "transfer": {"type": "transfer", "price": price, "regularPrice": price},
                    },
                },
                "limits": {
                    "TTL": "10",
                    "limit": str(self.check_limit),
                    "used": used,
                    "naturalLanguage": f"{used} out of {self.check_limit} checks within 10 "
                    "seconds used.",
                },
            }
        if parts[:2] == ["domain", "create"] and len(parts) == 3:
            name = parts[2]
            if body.get("agreeToTerms") != "yes":
                return 400, {"status": "ERROR", "message": "You must agree to the terms."}
            with self.lock:
                entry = self.names.get(name, PorkbunName())
                if name in self.owned or entry.avail != "yes":
                    return 400, {"status": "ERROR", "message": "Domain is not available."}
                expected = round(float(self._price(name)) * 100)
                if body.get("cost") != expected:
                    return 400, {
                        "status": "ERROR",
                        "message": f"Cost mismatch: the price is {expected} pennies.",
                    }
                self.owned.add(name)
                order = len(self.posts("/domain/create/")) + 1000
            return 200, {"status": "SUCCESS", "domain": name, "cost": expected, "orderId": order}
        if parts[:2] == ["domain", "listAll"]:
            start = int(body.get("start") or 0)
            owned = sorted(self.owned)[start : start + 1000]
            return 200, {
                "status": "SUCCESS",
                "domains": [
                    {"domain": name, "status": "ACTIVE", "tld": name.rsplit(".", 1)[1]}
                    for name in owned
                ],
            }
        if parts[:2] == ["domain", "updateNs"] and len(parts) == 3:
            name = parts[2]
            if name not in self.owned:
                return 400, {"status": "ERROR", "message": "Domain not found in account."}
            self.nameservers[name] = list(body.get("ns") or [])
            return 200, {"status": "SUCCESS"}
        return 404, {"status": "ERROR", "message": "Invalid endpoint."}


@dataclass
class NamecheapName:
    available: bool = True
    premium: bool = False
    premium_price: str = "0"


@dataclass
class FakeNamecheap(_FakeBase):
    prices: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _FakeBase.__init__(self)
        self.prices = self.prices or {"com": "10.28", "io": "34.98"}
        self.names: dict[str, NamecheapName] = {}
        self.owned: set[str] = set()
        self.nameservers: dict[str, list[str]] = {}

    def __enter__(self) -> FakeNamecheap:
        super().__enter__()
        return self

    def set_name(self, name: str, **fields: Any) -> None:
        self.names[name] = NamecheapName(**fields)

    def commands(self, command: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.body.get("Command") == command]

    def _handle(self, handler: FakeHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        raw = handler.rfile.read(length).decode() if length else ""
        path = urllib.parse.urlsplit(handler.path)
        body = dict(urllib.parse.parse_qsl(raw, keep_blank_values=True))
        request = Recorded(
            handler.command, path.path, {k.lower(): v for k, v in handler.headers.items()}, body
        )
        with self.lock:
            self.requests.append(request)
        payload = self._answer(request)
        self._send(handler, 200, payload.encode(), "text/xml; charset=utf-8")

    @staticmethod
    def _wrap(command: str, inner: str, *, errors: str = "") -> str:
        status = "ERROR" if errors else "OK"
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            f'<ApiResponse xmlns="http://api.namecheap.com/xml.response" Status="{status}">'
            f"<Errors>{errors}</Errors><Warnings/>"
            f"<RequestedCommand>{command}</RequestedCommand>"
            + (f'<CommandResponse Type="{command}">{inner}</CommandResponse>' if not errors else "")
            + "<Server>FAKE01</Server><GMTTimeDifference>--5:00</GMTTimeDifference>"
            "<ExecutionTime>0.01</ExecutionTime></ApiResponse>"
        )

    def _error(self, command: str, number: str, text: str) -> str:
        return self._wrap(command, "", errors=f'<Error Number="{number}">{text}</Error>')

    def _answer(self, request: Recorded) -> str:
        body = request.body
        command = body.get("Command", "")
        if (
            request.method != "POST"
            or body.get("ApiUser") != NAMECHEAP_USER
            or body.get("ApiKey") != NAMECHEAP_KEY
            or body.get("UserName") != NAMECHEAP_USER
        ):
            return self._error(command, "1011102", "Parameter APIKey is invalid")
        if body.get("ClientIp") != NAMECHEAP_IP:
            return self._error(command, "1011150", "Invalid request IP")
        if command == "namecheap.users.getPricing":
            products = "".join(
                f"<Product Name={quoteattr(tld)}>"
                + "".join(
                    f'<Price Duration="{years}" DurationType="YEAR" '
                    f'Price="{float(price) * years:.2f}" '
                    f'RegularPrice="{float(price) * years:.2f}" '
                    f'YourPrice="{float(price) * years:.2f}" CouponPrice="" Currency="USD" />'
                    for years in (1, 2)
                )
                + "</Product>"
                for tld, price in self.prices.items()
            )
            return self._wrap(
                command,
                '<UserGetPricingResult><ProductType Name="DOMAIN">'
                f'<ProductCategory Name="REGISTER">{products}</ProductCategory>'
                "</ProductType></UserGetPricingResult>",
            )
        if command == "namecheap.domains.check":
            results = []
            for name in body.get("DomainList", "").split(","):
                entry = self.names.get(name, NamecheapName())
                available = entry.available and name not in self.owned
                premium_price = entry.premium_price if entry.premium else "0"
                results.append(
                    f'<DomainCheckResult Domain="{name}" Available="{str(available).lower()}" '
                    f'ErrorNo="0" Description="" IsPremiumName="{str(entry.premium).lower()}" '
                    f'PremiumRegistrationPrice="{premium_price}" PremiumRenewalPrice="0" '
                    'PremiumRestorePrice="0" PremiumTransferPrice="0" IcannFee="0" EapFee="0"/>'
                )
            return self._wrap(command, "".join(results))
        if command == "namecheap.domains.create":
            name = body.get("DomainName", "")
            entry = self.names.get(name, NamecheapName())
            if name in self.owned or not entry.available:
                return self._error(command, "2033409", f"Domain {name} is not available")
            required = ("FirstName", "LastName", "Address1", "City", "StateProvince")
            for role in ("Registrant", "Tech", "Admin", "AuxBilling"):
                for part in (*required, "PostalCode", "Country", "Phone", "EmailAddress"):
                    if not body.get(f"{role}{part}"):
                        return self._error(command, "2011170", f"{role}{part} is missing")
            self.owned.add(name)
            charged = float(self.prices[name.rsplit(".", 1)[1]]) * int(body.get("Years", "1"))
            return self._wrap(
                command,
                f'<DomainCreateResult Domain="{name}" Registered="true" '
                f'ChargedAmount="{charged:.4f}" DomainID="9007" OrderID="196074" '
                'TransactionID="380716" WhoisguardEnable="true" NonRealTimeDomain="false" />',
            )
        if command == "namecheap.domains.getList":
            term = body.get("SearchTerm", "")
            found = "".join(
                f'<Domain ID="1" Name="{name}" User="{NAMECHEAP_USER}" IsExpired="false" '
                'IsLocked="false" AutoRenew="false" WhoisGuard="ENABLED" IsPremium="false" '
                'IsOurDNS="false"/>'
                for name in sorted(self.owned)
                if term in name
            )
            return self._wrap(
                command,
                f"<DomainGetListResult>{found}</DomainGetListResult>"
                "<Paging><TotalItems>1</TotalItems><CurrentPage>1</CurrentPage>"
                "<PageSize>100</PageSize></Paging>",
            )
        if command == "namecheap.domains.dns.setCustom":
            name = f"{body.get('SLD')}.{body.get('TLD')}"
            if name not in self.owned:
                return self._error(command, "2019166", "Domain not found")
            self.nameservers[name] = body.get("Nameservers", "").split(",")
            return self._wrap(
                command, f'<DomainDNSSetCustomResult Domain="{name}" Updated="true"/>'
            )
        return self._error(command, "1010102", "Command not found")
