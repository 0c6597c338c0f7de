"""The static RPKI source (rpki-client / stayrtr JSON) and the ``[rpki]``
configuration section."""

import json

import pytest

from fastbgp.rpki.files import RpkiFileError, load_file, parse_bytes, to_document
from tests.test_config import cfg, errors_of

DOC = {
    "metadata": {"buildtime": "2024-01-01T00:00:00Z"},
    "roas": [
        {"prefix": "192.0.2.0/24", "maxLength": 24, "asn": "AS64496", "ta": "ripe"},
        {"prefix": "2001:db8::/32", "maxLength": 48, "asn": 64497},
        {"prefix": "198.51.100.0/22", "maxLength": 24, "asn": "as64498"},
    ],
    "aspas": [
        {"customer_asid": 64496, "providers": [64510, "AS64511"]},
        {"customer_asid": 64497, "providers": [{"asid": 64512, "afi_limit": "ipv4"}]},
        {"customer": "AS64498", "providers": []},
    ],
}


def test_parse_rpki_client_json():
    data = parse_bytes(json.dumps(DOC).encode())
    assert data.vrps == [
        (1, bytes((192, 0, 2, 0)), 24, 24, 64496),
        (2, bytes.fromhex("20010db8") + bytes(12), 32, 48, 64497),
        (1, bytes((198, 51, 100, 0)), 22, 24, 64498),
    ]
    assert data.aspas == {64496: (64510, 64511), 64497: (64512,), 64498: ()}


def test_stayrtr_provider_authorizations_layout():
    """stayrtr reads ASPA per AFI; the two lists of one customer merge."""
    doc = {"roas": [], "aspas": [{"customer_asid": 1, "providers": [5]}],
           "provider_authorizations": {"ipv4": [{"customer_asid": 1, "providers": [2, 3]}],
                                       "ipv6": [{"customer_asid": 1, "providers": [3, 4]},
                                                {"customer_asid": 9, "providers": []}]}}
    assert parse_bytes(json.dumps(doc).encode()).aspas == {1: (2, 3, 4, 5), 9: ()}
    with pytest.raises(RpkiFileError, match=r"provider_authorizations.ipv6\[0\]: no customer_asid"):
        parse_bytes(b'{"provider_authorizations": {"ipv6": [{"providers": []}]}}')
    with pytest.raises(RpkiFileError, match="must be an object"):
        parse_bytes(b'{"provider_authorizations": []}')


def test_round_trip_through_to_document():
    data = parse_bytes(json.dumps(DOC).encode())
    again = parse_bytes(json.dumps(to_document(data.vrps, data.aspas)).encode())
    assert again == data


def test_missing_max_length_defaults_to_the_prefix_length():
    data = parse_bytes(b'{"roas": [{"prefix": "192.0.2.0/24", "asn": 1}]}')
    assert data.vrps == [(1, bytes((192, 0, 2, 0)), 24, 24, 1)]


@pytest.mark.parametrize("doc, message", [
    ({"roas": [{"prefix": "192.0.2.0/24", "maxLength": 24, "asn": 1}, {"prefix": "192.0.2.0/24",
      "maxLength": 33, "asn": 1}]}, "roas[1]: maxLength 33 out of range 24..32"),
    ({"roas": [{"prefix": "192.0.2.1/24", "maxLength": 24, "asn": 1}]}, "roas[0]: 192.0.2.1/24 has host bits set"),
    ({"roas": [{"prefix": "banana", "maxLength": 24, "asn": 1}]}, "roas[0]:"),
    ({"roas": [{"maxLength": 24, "asn": 1}]}, "roas[0]: no prefix"),
    ({"roas": [{"prefix": "192.0.2.0/24", "maxLength": 24}]}, "roas[0]: no asn"),
    ({"roas": [{"prefix": "192.0.2.0/24", "maxLength": 24, "asn": "ASX"}]}, "roas[0]: ASN 'ASX' is not a number"),
    ({"roas": [{"prefix": "192.0.2.0/24", "maxLength": 24, "asn": 1 << 32}]}, "roas[0]: ASN 4294967296 out of range"),
    ({"roas": [{"prefix": "192.0.2.0/24", "maxLength": True, "asn": 1}]}, "roas[0]: maxLength True"),
    ({"roas": ["x"]}, "roas[0]: not an object"),
    ({"aspas": [{"providers": [1]}]}, "aspas[0]: no customer_asid"),
    ({"aspas": [{"customer_asid": 1, "providers": 5}]}, "aspas[0]: providers is not a list"),
    ({"aspas": [{"customer_asid": 1, "providers": [1, "x"]}]}, "aspas[0].providers[1]: ASN 'x' is not a number"),
    ({"aspas": [{"customer_asid": 1, "providers": []}, {"customer_asid": 1, "providers": []}]},
     "aspas[1]: second record for AS1"),
    ({"roas": {}}, '"roas" and "aspas" must be lists'),
    ([], "not a JSON object"),
])
def test_errors_name_the_entry(doc, message):
    with pytest.raises(RpkiFileError) as exc:
        parse_bytes(json.dumps(doc).encode())
    assert message in str(exc.value)


def test_not_json_and_missing_file(tmp_path):
    with pytest.raises(RpkiFileError, match="not JSON"):
        parse_bytes(b"{")
    with pytest.raises(RpkiFileError, match="No such file"):
        load_file(tmp_path / "absent.json")
    path = tmp_path / "vrps.json"
    path.write_text(json.dumps(DOC))
    assert len(load_file(path).vrps) == 3
    path.write_text('{"roas": [1]}')
    with pytest.raises(RpkiFileError, match=r"vrps.json: roas\[0\]"):
        load_file(path)


def test_rpki_config_section():
    c = cfg("""
        [rpki]
        file = "/var/db/rpki-client/json"
        rtr-version = 1
        [[rpki.caches]]
        address = "192.0.2.10"
        preference = 1
        [[rpki.caches]]
        address = "192.0.2.11"
        port = 8282
        preference = 2
        refresh = 30
        retry = 5
        expire = 60
    """)
    assert c.rpki.rtr_version == 1 and c.rpki.file == "/var/db/rpki-client/json"
    first, second = c.rpki.caches
    assert (first.address, first.port, first.preference, first.refresh) == ("192.0.2.10", 323, 1, None)
    assert (second.port, second.refresh, second.retry, second.expire) == (8282, 30, 5, 60)
    assert cfg().rpki is None
    # the client takes the configured caches as they are, most preferred first
    from fastbgp.rpki.client import RtrClient
    client = RtrClient(list(reversed(c.rpki.caches)), version=c.rpki.rtr_version)
    assert [x.spec.address for x in client.caches] == ["192.0.2.10", "192.0.2.11"]
    assert (client.caches[1].status.refresh, client.caches[1].status.expire) == (30, 60)
    assert client.caches[0].version == 1


@pytest.mark.parametrize("body", [
    "[rpki]\nrtr-version = 3\n",
    "[rpki]\nbogus = 1\n",
    '[[rpki.caches]]\naddress = "192.0.2.1"\nrefresh = 0\n',
    '[[rpki.caches]]\naddress = "192.0.2.1"\nretry = 7201\n',
    '[[rpki.caches]]\naddress = "192.0.2.1"\nexpire = 172801\n',
    '[[rpki.caches]]\naddress = "192.0.2.1"\npreference = 256\n',
    '[[rpki.caches]]\nport = 323\n',
])
def test_rpki_config_constraints(body):
    errors_of(body)


def test_load_into_reports_the_difference(tmp_path, vrp_impl):
    from fastbgp.rpki.aspa import AspaTable
    from fastbgp.rpki.client import RtrObserver
    from fastbgp.rpki.files import load_into

    class Rec(RtrObserver):
        def __init__(self):
            self.events = []

        def vrps_changed(self, added, removed):
            self.events.append(("vrps", added, removed))

        def aspas_changed(self, changed):
            self.events.append(("aspas", changed))

    vrps, aspas, rec = vrp_impl.VrpTable(), AspaTable(), Rec()
    path = tmp_path / "rpki.json"
    path.write_text(json.dumps(DOC))
    added, removed, changes = load_into(path, vrps, aspas, rec)
    assert len(added) == 3 and removed == [] and len(vrps) == 3
    doc = dict(DOC, roas=DOC["roas"][1:] + [{"prefix": "203.0.113.0/24", "maxLength": 24, "asn": 64499}],
               aspas=DOC["aspas"][1:])
    path.write_text(json.dumps(doc))
    load_into(path, vrps, aspas, rec)
    assert rec.events[-2] == ("vrps", [(1, bytes((203, 0, 113, 0)), 24, 24, 64499)],
                              [(1, bytes((192, 0, 2, 0)), 24, 24, 64496)])
    assert rec.events[-1] == ("aspas", {64496: None})
    path.write_text("{")
    with pytest.raises(RpkiFileError):
        load_into(path, vrps, aspas, rec)
    assert len(vrps) == 3 and len(aspas) == 2  # untouched
