"""The transit secrets engine (mount type `transit`): OpenBao vs Lockana.

Every endpoint runs on both servers through raw HTTP, hvac's transit API and the `bao`
CLI, and the answers are compared. Ciphertexts, signatures, HMACs, public keys, random
bytes and backups differ on every run: a step names them volatile and the scenario
checks them on the same server instead (they decrypt, verify, or match the exported
public key).
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from compat_util import Recorder, clean_env, normalize, uid

ASYM = ["ed25519", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa-2048"]
SYM = ["aes128-gcm96", "aes256-gcm96", "chacha20-poly1305"]
# What changes on every run: key material and its products.
RANDOM = {"ciphertext", "signature", "hmac", "public_key", "publickey", "random_bytes", "backup", "keys"}


def b64(s: bytes | str) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def _enable(r: Recorder) -> str:
    m = f"transit-{r.key}"
    r.http("enable transit", "POST", f"sys/mounts/{m}", {"type": "transit"})
    return m


def _disable(r: Recorder, m: str) -> None:
    r.http("disable", "DELETE", f"sys/mounts/{m}")


def test_transit_key_types_create_read_list_config_rotate_trim_delete(pair):
    def scenario(r: Recorder):
        m = _enable(r)
        for t in SYM + ASYM + ["rsa-3072", "rsa-4096", "hmac"]:
            opts = {"key_size": 32} if t == "hmac" else {}
            st, body = r.http(f"create {t}", "POST", f"{m}/keys/{t}", {"type": t, **opts}, volatile=RANDOM)
            assert st == 200 and body["data"]["type"] == t
            st, body = r.http(f"read {t}", "GET", f"{m}/keys/{t}", volatile=RANDOM)
            if t in ASYM:
                entry = body["data"]["keys"]["1"]
                assert entry["public_key"] and set(entry) == {"name", "public_key", "certificate_chain", "creation_time"}
        r.http("create again: warning", "POST", f"{m}/keys/aes256-gcm96", {"type": "rsa-2048"}, volatile=RANDOM)
        r.http("create hmac without key_size", "POST", f"{m}/keys/h0", {"type": "hmac"})
        r.http("create hmac key_size", "POST", f"{m}/keys/h64", {"type": "hmac", "key_size": 64})
        r.http("read hmac key_size", "GET", f"{m}/keys/h64")
        r.http("create exportable derived", "POST", f"{m}/keys/d", {"derived": True, "exportable": True, "allow_plaintext_backup": True}, volatile=RANDOM)
        r.http("create convergent", "POST", f"{m}/keys/conv", {"derived": True, "convergent_encryption": True}, volatile=RANDOM)
        r.http("create derived ed25519", "POST", f"{m}/keys/ded", {"type": "ed25519", "derived": True}, volatile=RANDOM)
        r.http("read derived ed25519", "GET", f"{m}/keys/ded")
        st, body = r.http("read derived ed25519 with context", "GET", f"{m}/keys/ded", params={"context": b64("c")}, volatile=RANDOM)
        assert body["data"]["keys"]["1"]["public_key"]
        r.http("list", "LIST", f"{m}/keys")
        r.http("list via get", "GET", f"{m}/keys", params={"list": "true"})
        # errors
        r.http("unknown type", "POST", f"{m}/keys/bad", {"type": "des"})
        r.http("key_size on aes", "POST", f"{m}/keys/bad", {"type": "aes256-gcm96", "key_size": 32})
        r.http("key_size too small", "POST", f"{m}/keys/bad", {"type": "hmac", "key_size": 8})
        r.http("convergent without derived", "POST", f"{m}/keys/bad", {"convergent_encryption": True})
        r.http("derived rsa", "POST", f"{m}/keys/bad", {"type": "rsa-2048", "derived": True})
        r.http("convergent ed25519", "POST", f"{m}/keys/bad", {"type": "ed25519", "derived": True, "convergent_encryption": True})
        r.http("auto rotate too short", "POST", f"{m}/keys/bad", {"auto_rotate_period": "10m"})
        r.http("read missing", "GET", f"{m}/keys/nope")
        r.http("bad name", "POST", f"{m}/keys/-x", {})
        # rotate, config, trim
        k = f"{m}/keys/aes256-gcm96"
        for i in range(3):
            r.http(f"rotate {i}", "POST", f"{k}/rotate", volatile=RANDOM)
        r.http("rotate missing", "POST", f"{m}/keys/nope/rotate")
        r.http("config missing", "POST", f"{m}/keys/nope/config", {"deletion_allowed": True})
        r.http("config min_decryption 0", "POST", f"{k}/config", {"min_decryption_version": 0}, volatile=RANDOM)
        r.http("config min_decryption negative", "POST", f"{k}/config", {"min_decryption_version": -1})
        r.http("config min_decryption too new", "POST", f"{k}/config", {"min_decryption_version": 9})
        r.http("config min_encryption too new", "POST", f"{k}/config", {"min_encryption_version": 9})
        r.http("config enc below dec", "POST", f"{k}/config", {"min_decryption_version": 3, "min_encryption_version": 2})
        r.http("config versions", "POST", f"{k}/config", {"min_decryption_version": 2, "min_encryption_version": 3}, volatile=RANDOM)
        r.http("config flags", "POST", f"{k}/config", {"exportable": True, "allow_plaintext_backup": True, "auto_rotate_period": "24h"}, volatile=RANDOM)
        r.http("config exportable cannot be unset", "POST", f"{k}/config", {"exportable": False}, volatile=RANDOM)
        r.http("config auto rotate too short", "POST", f"{k}/config", {"auto_rotate_period": 60})
        r.http("trim missing version", "POST", f"{k}/trim", {})
        r.http("trim beyond min_encryption", "POST", f"{k}/trim", {"min_available_version": 4})
        r.http("trim zero", "POST", f"{k}/trim", {"min_available_version": 0})
        st, body = r.http("trim", "POST", f"{k}/trim", {"min_available_version": 2}, volatile=RANDOM)
        assert sorted(body["data"]["keys"]) == ["2", "3", "4"]
        r.http("trim decrement", "POST", f"{k}/trim", {"min_available_version": 1})
        r.http("trim missing key", "POST", f"{m}/keys/nope/trim", {"min_available_version": 1})
        r.http("read after trim", "GET", k, volatile=RANDOM)
        # delete
        r.http("delete not allowed", "DELETE", k)
        r.http("delete missing", "DELETE", f"{m}/keys/nope")
        r.http("allow deletion", "POST", f"{k}/config", {"deletion_allowed": True}, volatile=RANDOM)
        r.http("delete", "DELETE", k)
        r.http("read deleted", "GET", k)
        r.http("unsupported op on rotate", "GET", f"{k}/rotate")
        r.http("unknown path", "GET", f"{m}/nothing-here")
        _disable(r, m)

    pair.run(scenario)


def test_transit_encrypt_decrypt_rewrap_datakey(pair):
    def scenario(r: Recorder):
        m = _enable(r)
        pt = b64("the quick brown fox")
        for t in SYM + ["rsa-2048"]:
            r.http(f"create {t}", "POST", f"{m}/keys/{t}", {"type": t}, volatile=RANDOM)
            st, body = r.http(f"encrypt {t}", "POST", f"{m}/encrypt/{t}", {"plaintext": pt}, volatile=RANDOM)
            ct = body["data"]["ciphertext"]
            assert ct.startswith("vault:v1:")
            st, body = r.http(f"decrypt {t}", "POST", f"{m}/decrypt/{t}", {"ciphertext": ct})
            assert body["data"]["plaintext"] == pt
            r.http(f"decrypt {t} tampered", "POST", f"{m}/decrypt/{t}", {"ciphertext": ct[:-6] + "AAAA=="})
        # encrypt to a missing key creates it (upsert), with the requested type
        r.http("encrypt upsert", "POST", f"{m}/encrypt/up", {"plaintext": pt, "type": "chacha20-poly1305"}, volatile=RANDOM)
        r.http("read upserted", "GET", f"{m}/keys/up", volatile=RANDOM)
        r.http("encrypt upsert asymmetric type", "POST", f"{m}/encrypt/up2", {"plaintext": pt, "type": "ecdsa-p256"})
        r.http("encrypt upsert unknown type", "POST", f"{m}/encrypt/up3", {"plaintext": pt, "type": "nope"})
        r.http("encrypt with signing key", "POST", f"{m}/encrypt/sig", {"plaintext": pt}, volatile=RANDOM)
        r.http("create ed25519", "POST", f"{m}/keys/ed", {"type": "ed25519"}, volatile=RANDOM)
        r.http("encrypt ed25519", "POST", f"{m}/encrypt/ed", {"plaintext": pt})
        r.http("decrypt ed25519", "POST", f"{m}/decrypt/ed", {"ciphertext": "vault:v1:AAAA"})
        # errors
        k = f"{m}/encrypt/aes256-gcm96"
        r.http("missing plaintext", "POST", k, {})
        r.http("bad base64", "POST", k, {"plaintext": "not base64!"})
        r.http("empty plaintext", "POST", k, {"plaintext": ""}, volatile=RANDOM)
        d = f"{m}/decrypt/aes256-gcm96"
        r.http("missing ciphertext", "POST", d, {})
        r.http("no prefix", "POST", d, {"ciphertext": "abc"})
        r.http("wrong fields", "POST", d, {"ciphertext": "vault:v1"})
        r.http("bad version", "POST", d, {"ciphertext": "vault:vx:abc"})
        r.http("version too new", "POST", d, {"ciphertext": "vault:v9:abc"})
        r.http("bad ciphertext base64", "POST", d, {"ciphertext": "vault:v1:!!"})
        r.http("short ciphertext", "POST", d, {"ciphertext": "vault:v1:AAAA"})
        r.http("decrypt missing key", "POST", f"{m}/decrypt/nope", {"ciphertext": "vault:v1:AAAA"})
        r.http("rewrap missing key", "POST", f"{m}/rewrap/nope", {"ciphertext": "vault:v1:AAAA"})
        # associated data
        st, body = r.http("encrypt aad", "POST", k, {"plaintext": pt, "associated_data": b64("hdr")}, volatile=RANDOM)
        ct = body["data"]["ciphertext"]
        st, body = r.http("decrypt aad", "POST", d, {"ciphertext": ct, "associated_data": b64("hdr")})
        assert body["data"]["plaintext"] == pt
        r.http("decrypt wrong aad", "POST", d, {"ciphertext": ct, "associated_data": b64("other")})
        r.http("aad not base64", "POST", k, {"plaintext": pt, "associated_data": "%%%"})
        r.http("aad on rsa", "POST", f"{m}/encrypt/rsa-2048", {"plaintext": pt, "associated_data": b64("hdr")})
        # versions, rotation, rewrap
        st, body = r.http("encrypt v1", "POST", k, {"plaintext": pt}, volatile=RANDOM)
        v1 = body["data"]["ciphertext"]
        r.http("rotate", "POST", f"{m}/keys/aes256-gcm96/rotate", volatile=RANDOM)
        st, body = r.http("encrypt latest", "POST", k, {"plaintext": pt}, volatile=RANDOM)
        assert body["data"]["key_version"] == 2
        r.http("encrypt key_version 1", "POST", k, {"plaintext": pt, "key_version": 1}, volatile=RANDOM)
        r.http("encrypt key_version too new", "POST", k, {"plaintext": pt, "key_version": 5})
        r.http("encrypt key_version negative", "POST", k, {"plaintext": pt, "key_version": -1})
        st, body = r.http("rewrap", "POST", f"{m}/rewrap/aes256-gcm96", {"ciphertext": v1}, volatile=RANDOM)
        assert body["data"]["ciphertext"].startswith("vault:v2:")
        st, body = r.http("decrypt rewrapped", "POST", d, {"ciphertext": body["data"]["ciphertext"]})
        assert body["data"]["plaintext"] == pt
        r.http("rewrap missing ciphertext", "POST", f"{m}/rewrap/aes256-gcm96", {})
        r.http("min_encryption 2", "POST", f"{m}/keys/aes256-gcm96/config", {"min_encryption_version": 2, "min_decryption_version": 2}, volatile=RANDOM)
        r.http("encrypt below min_encryption", "POST", k, {"plaintext": pt, "key_version": 1})
        r.http("decrypt too old", "POST", d, {"ciphertext": v1})
        # batches
        st, body = r.http(
            "batch encrypt",
            "POST",
            k,
            {"batch_input": [{"plaintext": pt, "reference": "a"}, {"plaintext": b64("two")}, {"plaintext": "%%%", "reference": "bad"}]},
            volatile=RANDOM,
        )
        cts = [x.get("ciphertext") for x in body["data"]["batch_results"]]
        r.http(
            "batch encrypt partial failure code",
            "POST",
            k,
            {"batch_input": [{"plaintext": pt}, {"plaintext": "%%%"}], "partial_failure_response_code": 207},
            volatile=RANDOM,
        )
        r.http("batch encrypt all ok", "POST", k, {"batch_input": [{"plaintext": pt}, {"plaintext": pt}]}, volatile=RANDOM)
        st, body = r.http(
            "batch decrypt",
            "POST",
            d,
            {"batch_input": [{"ciphertext": cts[0], "reference": "a"}, {"ciphertext": cts[1]}, {"ciphertext": "vault:v2:AAAA"}]},
        )
        assert [x.get("plaintext") for x in body["data"]["batch_results"][:2]] == [pt, b64("two")]
        r.http("batch decrypt missing ciphertext", "POST", d, {"batch_input": [{"context": ""}]})
        r.http("batch empty", "POST", k, {"batch_input": []})
        r.http("batch not a list", "POST", k, {"batch_input": "x"})
        r.http("batch item not a map", "POST", k, {"batch_input": ["x"]})
        r.http("batch missing plaintext", "POST", k, {"batch_input": [{"reference": "r"}]})
        r.http("batch rewrap", "POST", f"{m}/rewrap/aes256-gcm96", {"batch_input": [{"ciphertext": cts[0]}, {"ciphertext": "bad"}]}, volatile=RANDOM)
        # derived keys and convergent encryption
        c = b64("tenant-1")
        st, body = r.http("encrypt derived upsert", "POST", f"{m}/encrypt/der", {"plaintext": pt, "context": c}, volatile=RANDOM)
        dct = body["data"]["ciphertext"]
        r.http("read derived", "GET", f"{m}/keys/der", volatile=RANDOM)
        st, body = r.http("decrypt derived", "POST", f"{m}/decrypt/der", {"ciphertext": dct, "context": c})
        assert body["data"]["plaintext"] == pt
        r.http("decrypt derived wrong context", "POST", f"{m}/decrypt/der", {"ciphertext": dct, "context": b64("other")})
        r.http("decrypt derived no context", "POST", f"{m}/decrypt/der", {"ciphertext": dct})
        r.http("encrypt derived no context", "POST", f"{m}/encrypt/der", {"plaintext": pt})
        r.http("bad context base64", "POST", f"{m}/encrypt/der", {"plaintext": pt, "context": "%%"})
        r.http("batch mixed context", "POST", f"{m}/encrypt/der", {"batch_input": [{"plaintext": pt, "context": c}, {"plaintext": pt}]})
        r.http("convergent without context", "POST", f"{m}/encrypt/conv-nc", {"plaintext": pt, "convergent_encryption": True})
        st, a = r.http("convergent 1", "POST", f"{m}/encrypt/conv", {"plaintext": pt, "context": c, "convergent_encryption": True}, volatile=RANDOM)
        st, b = r.http("convergent 2", "POST", f"{m}/encrypt/conv", {"plaintext": pt, "context": c}, volatile=RANDOM)
        assert a["data"]["ciphertext"] == b["data"]["ciphertext"]
        r.http("read convergent", "GET", f"{m}/keys/conv", volatile=RANDOM)
        st, body = r.http("decrypt convergent", "POST", f"{m}/decrypt/conv", {"ciphertext": a["data"]["ciphertext"], "context": c})
        assert body["data"]["plaintext"] == pt
        # data keys
        st, body = r.http("datakey plaintext", "POST", f"{m}/datakey/plaintext/chacha20-poly1305", {}, volatile=RANDOM | {"plaintext"})
        dk, dkct = body["data"]["plaintext"], body["data"]["ciphertext"]
        assert len(base64.b64decode(dk)) == 32
        st, body = r.http("datakey decrypts", "POST", f"{m}/decrypt/chacha20-poly1305", {"ciphertext": dkct}, volatile={"plaintext"})
        assert body["data"]["plaintext"] == dk
        r.http("datakey wrapped", "POST", f"{m}/datakey/wrapped/chacha20-poly1305", {"bits": 512}, volatile=RANDOM)
        st, body = r.http("datakey 128", "POST", f"{m}/datakey/plaintext/aes128-gcm96", {"bits": 128}, volatile=RANDOM | {"plaintext"})
        assert len(base64.b64decode(body["data"]["plaintext"])) == 16
        r.http("datakey bad bits", "POST", f"{m}/datakey/wrapped/aes128-gcm96", {"bits": 100})
        r.http("datakey bad kind", "POST", f"{m}/datakey/other/aes128-gcm96", {})
        r.http("datakey missing key", "POST", f"{m}/datakey/wrapped/nope", {})
        r.http("datakey derived", "POST", f"{m}/datakey/wrapped/der", {"context": c}, volatile=RANDOM)
        r.http("datakey rsa", "POST", f"{m}/datakey/wrapped/rsa-2048", {}, volatile=RANDOM)
        _disable(r, m)

    pair.run(scenario)


def test_transit_sign_verify_hmac(pair):
    def scenario(r: Recorder):
        m = _enable(r)
        msg = b64("message to sign")
        other = b64("another message")
        for t in ASYM:
            r.http(f"create {t}", "POST", f"{m}/keys/{t}", {"type": t}, volatile=RANDOM)
            variants = [("default", {}), ("jws", {"marshaling_algorithm": "jws"}), ("sha2-512", {"hash_algorithm": "sha2-512"})]
            if t.startswith("rsa"):
                variants += [("pkcs1v15", {"signature_algorithm": "pkcs1v15"}), ("pss sha2-384", {"signature_algorithm": "pss", "hash_algorithm": "sha2-384"})]
            for name, opts in variants:
                st, body = r.http(f"sign {t} {name}", "POST", f"{m}/sign/{t}", {"input": msg, **opts}, volatile=RANDOM)
                assert st == 200, body
                sig = body["data"]["signature"]
                st, body = r.http(f"verify {t} {name}", "POST", f"{m}/verify/{t}", {"input": msg, "signature": sig, **opts})
                assert body["data"]["valid"] is True
                st, body = r.http(f"verify {t} {name} other input", "POST", f"{m}/verify/{t}", {"input": other, "signature": sig, **opts})
                assert body["data"]["valid"] is False
            st, body = r.http(f"sign {t} url algorithm", "POST", f"{m}/sign/{t}/sha2-384", {"input": msg}, volatile=RANDOM)
            r.http(f"verify {t} url algorithm", "POST", f"{m}/verify/{t}/sha2-384", {"input": msg, "signature": body["data"]["signature"]})
            if t != "ed25519":
                digest = b64(hashlib.sha256(b"message to sign").digest())
                st, body = r.http(f"sign {t} prehashed", "POST", f"{m}/sign/{t}", {"input": digest, "prehashed": True}, volatile=RANDOM)
                st, body = r.http(f"verify {t} prehashed against message", "POST", f"{m}/verify/{t}", {"input": msg, "signature": body["data"]["signature"]})
                assert body["data"]["valid"] is True
        # batches
        st, body = r.http(
            "batch sign",
            "POST",
            f"{m}/sign/ecdsa-p256",
            {"batch_input": [{"input": msg, "reference": "one"}, {"input": other}, {"input": "%%"}]},
            volatile=RANDOM,
        )
        sigs = [x.get("signature") for x in body["data"]["batch_results"]]
        r.http(
            "batch verify",
            "POST",
            f"{m}/verify/ecdsa-p256",
            {"batch_input": [{"input": msg, "signature": sigs[0], "reference": "one"}, {"input": msg, "signature": sigs[1]}]},
        )
        r.http("batch verify missing signature", "POST", f"{m}/verify/ecdsa-p256", {"batch_input": [{"input": msg, "signature": sigs[0]}, {"input": msg}]})
        # derived ed25519 returns its public key
        r.http("create derived ed25519", "POST", f"{m}/keys/ded", {"type": "ed25519", "derived": True}, volatile=RANDOM)
        st, body = r.http("sign derived", "POST", f"{m}/sign/ded", {"input": msg, "context": b64("c")}, volatile=RANDOM)
        assert body["data"]["public_key"]
        r.http("verify derived", "POST", f"{m}/verify/ded", {"input": msg, "context": b64("c"), "signature": body["data"]["signature"]})
        r.http("verify derived other context", "POST", f"{m}/verify/ded", {"input": msg, "context": b64("d"), "signature": body["data"]["signature"]})
        # errors
        r.http("create aes", "POST", f"{m}/keys/aes", {}, volatile=RANDOM)
        r.http("sign with aes", "POST", f"{m}/sign/aes", {"input": msg})
        r.http("verify with aes", "POST", f"{m}/verify/aes", {"input": msg, "signature": "vault:v1:AAAA"})
        r.http("sign missing key", "POST", f"{m}/sign/nope", {"input": msg})
        r.http("verify missing key", "POST", f"{m}/verify/nope", {"input": msg, "signature": "vault:v1:AAAA"})
        r.http("sign bad hash", "POST", f"{m}/sign/ecdsa-p256", {"input": msg, "hash_algorithm": "md5"})
        r.http("sign bad marshaling", "POST", f"{m}/sign/ecdsa-p256", {"input": msg, "marshaling_algorithm": "xml"})
        r.http("sign none without prehashed", "POST", f"{m}/sign/rsa-2048", {"input": msg, "hash_algorithm": "none"})
        r.http("sign bad base64", "POST", f"{m}/sign/ecdsa-p256", {"input": "%%"})
        r.http("sign key_version too new", "POST", f"{m}/sign/ecdsa-p256", {"input": msg, "key_version": 3})
        r.http("verify neither", "POST", f"{m}/verify/ecdsa-p256", {"input": msg})
        r.http("verify both", "POST", f"{m}/verify/ecdsa-p256", {"input": msg, "signature": "x", "hmac": "y"})
        r.http("verify no prefix", "POST", f"{m}/verify/ecdsa-p256", {"input": msg, "signature": "abc"})
        r.http("verify bad base64", "POST", f"{m}/verify/ecdsa-p256", {"input": msg, "signature": "vault:v1:%%"})
        r.http("verify too new", "POST", f"{m}/verify/ecdsa-p256", {"input": msg, "signature": "vault:v7:AAAA"})
        r.http("verify garbage asn1", "POST", f"{m}/verify/ecdsa-p256", {"input": msg, "signature": "vault:v1:AAAA"})
        # hmac
        for t in ["hmac", "aes256-gcm96"]:
            r.http(f"create {t} for hmac", "POST", f"{m}/keys/h-{t}", {"type": t, "key_size": 32} if t == "hmac" else {"type": t}, volatile=RANDOM)
            for alg in ["", "/sha2-512", "/sha1"]:
                st, body = r.http(f"hmac {t}{alg}", "POST", f"{m}/hmac/h-{t}{alg}", {"input": msg}, volatile=RANDOM)
                mac = body["data"]["hmac"]
                st, body = r.http(f"verify hmac {t}{alg}", "POST", f"{m}/verify/h-{t}{alg}", {"input": msg, "hmac": mac})
                assert body["data"]["valid"] is True
                st, body = r.http(f"verify hmac {t}{alg} other input", "POST", f"{m}/verify/h-{t}{alg}", {"input": other, "hmac": mac})
                assert body["data"]["valid"] is False
        r.http("hmac batch", "POST", f"{m}/hmac/h-hmac", {"batch_input": [{"input": msg, "reference": "r"}, {"input": "%%"}]}, volatile=RANDOM)
        r.http("hmac missing input", "POST", f"{m}/hmac/h-hmac", {})
        r.http("hmac missing key", "POST", f"{m}/hmac/nope", {"input": msg})
        r.http("hmac key_version too new", "POST", f"{m}/hmac/h-hmac", {"input": msg, "key_version": 4})
        r.http("verify hmac no prefix", "POST", f"{m}/verify/h-hmac", {"input": msg, "hmac": "abc"})
        r.http("verify hmac too new", "POST", f"{m}/verify/h-hmac", {"input": msg, "hmac": "vault:v5:AAAA"})
        r.http("verify hmac batch mixed", "POST", f"{m}/verify/h-hmac", {"batch_input": [{"input": msg, "hmac": "vault:v1:AAAA"}, {"input": msg, "signature": "x"}]})
        _disable(r, m)

    pair.run(scenario)


def test_transit_random_hash_export_backup_restore_cache_config(pair):
    def scenario(r: Recorder):
        m = _enable(r)
        st, body = r.http("random", "POST", f"{m}/random", {}, volatile=RANDOM)
        assert len(base64.b64decode(body["data"]["random_bytes"])) == 32
        st, body = r.http("random url bytes", "POST", f"{m}/random/64", {}, volatile=RANDOM)
        assert len(base64.b64decode(body["data"]["random_bytes"])) == 64
        st, body = r.http("random hex", "POST", f"{m}/random", {"bytes": 16, "format": "hex"}, volatile=RANDOM)
        assert len(bytes.fromhex(body["data"]["random_bytes"])) == 16
        r.http("random source", "POST", f"{m}/random/platform/8", {}, volatile=RANDOM)
        r.http("random seal", "POST", f"{m}/random/seal", {}, volatile=RANDOM)
        r.http("random bad source", "POST", f"{m}/random/moon/8", {})
        r.http("random zero", "POST", f"{m}/random", {"bytes": 0})
        r.http("random too many", "POST", f"{m}/random", {"bytes": 1 << 20})
        r.http("random bad format", "POST", f"{m}/random", {"format": "raw"})
        r.http("random bad url bytes", "POST", f"{m}/random/platform/x", {})
        data = b64("hash me")
        for alg in ["", "/sha2-224", "/sha2-384", "/sha2-512", "/sha3-224", "/sha3-256", "/sha3-512"]:
            r.http(f"hash{alg}", "POST", f"{m}/hash{alg}", {"input": data})
        r.http("hash base64", "POST", f"{m}/hash", {"input": data, "format": "base64", "algorithm": "sha2-512"})
        r.http("hash missing input", "POST", f"{m}/hash", {})
        r.http("hash bad algorithm", "POST", f"{m}/hash/md5", {"input": data})
        r.http("hash bad format", "POST", f"{m}/hash", {"input": data, "format": "raw"})
        r.http("hash bad base64", "POST", f"{m}/hash", {"input": "%%"})
        # export
        r.http("create not exportable", "POST", f"{m}/keys/closed", {}, volatile=RANDOM)
        r.http("export not exportable", "GET", f"{m}/export/encryption-key/closed")
        r.http("export bad type", "GET", f"{m}/export/secret-key/closed")
        r.http("export missing key", "GET", f"{m}/export/encryption-key/nope")
        for t in SYM + ASYM + ["hmac"]:
            size = {"key_size": 32} if t == "hmac" else {}
            r.http(f"create exportable {t}", "POST", f"{m}/keys/x-{t}", {"type": t, "exportable": True, **size}, volatile=RANDOM)
            for kind in ["encryption-key", "signing-key", "hmac-key", "public-key"]:
                st, body = r.http(f"export {kind} {t}", "GET", f"{m}/export/{kind}/x-{t}", volatile=RANDOM)
                if st == 200:
                    assert body["data"]["keys"]["1"]
            r.http(f"export {t} latest", "GET", f"{m}/export/hmac-key/x-{t}/latest", volatile=RANDOM)
        for fmt in ["der", "pem", "raw"]:
            r.http(f"export ecdsa signing-key {fmt}", "GET", f"{m}/export/signing-key/x-ecdsa-p256", params={"format": fmt}, volatile=RANDOM)
            r.http(f"export ed25519 public-key {fmt}", "GET", f"{m}/export/public-key/x-ed25519", params={"format": fmt}, volatile=RANDOM)
        r.http("export bad version", "GET", f"{m}/export/hmac-key/x-hmac/vx")
        r.http("export missing version", "GET", f"{m}/export/hmac-key/x-hmac/9")
        # backup and restore
        r.http("backup not allowed", "GET", f"{m}/backup/closed")
        r.http("backup missing", "GET", f"{m}/backup/nope")
        r.http("create backupable", "POST", f"{m}/keys/bk", {"exportable": True, "allow_plaintext_backup": True}, volatile=RANDOM)
        st, body = r.http("encrypt before backup", "POST", f"{m}/encrypt/bk", {"plaintext": data}, volatile=RANDOM)
        ct = body["data"]["ciphertext"]
        st, body = r.http("backup", "GET", f"{m}/backup/bk", volatile=RANDOM)
        backup = body["data"]["backup"]
        r.http("read after backup", "GET", f"{m}/keys/bk", volatile=RANDOM)
        r.http("restore existing refused", "POST", f"{m}/restore", {"backup": backup})
        r.http("restore to new name", "POST", f"{m}/restore/bk2", {"backup": backup})
        st, body = r.http("decrypt with restored", "POST", f"{m}/decrypt/bk2", {"ciphertext": ct})
        assert body["data"]["plaintext"] == data
        r.http("read restored", "GET", f"{m}/keys/bk2", volatile=RANDOM)
        r.http("restore force", "POST", f"{m}/restore/bk2", {"backup": backup, "force": True})
        r.http("restore missing backup", "POST", f"{m}/restore", {})
        r.http("restore garbage", "POST", f"{m}/restore/g", {"backup": "%%"})
        # cache config
        r.http("cache-config read", "GET", f"{m}/cache-config")
        r.http("cache-config too small", "POST", f"{m}/cache-config", {"size": 3})
        r.http("cache-config write", "POST", f"{m}/cache-config", {"size": 100})
        r.http("cache-config read back", "GET", f"{m}/cache-config")
        _disable(r, m)

    pair.run(scenario)


def test_transit_through_hvac(pair):
    def scenario(r: Recorder):
        m = _enable(r)
        tr = lambda c: c.secrets.transit  # noqa: E731
        pt = b64("hvac data")
        r.hvac("create_key", lambda c: tr(c).create_key("k", mount_point=m), volatile=RANDOM)
        r.hvac("create_key rsa", lambda c: tr(c).create_key("rk", key_type="rsa-2048", exportable=True, mount_point=m), volatile=RANDOM)
        r.hvac("read_key", lambda c: tr(c).read_key("k", mount_point=m), volatile=RANDOM)
        r.hvac("list_keys", lambda c: tr(c).list_keys(mount_point=m))
        ct = r.hvac("encrypt_data", lambda c: tr(c).encrypt_data("k", plaintext=pt, mount_point=m), volatile=RANDOM)["data"]["ciphertext"]
        res = r.hvac("decrypt_data", lambda c: tr(c).decrypt_data("k", ciphertext=ct, mount_point=m))
        assert res["data"]["plaintext"] == pt
        r.hvac("rotate_key", lambda c: tr(c).rotate_key("k", mount_point=m), volatile=RANDOM)
        r.hvac("rewrap_data", lambda c: tr(c).rewrap_data("k", ciphertext=ct, mount_point=m), volatile=RANDOM)
        r.hvac("update_key_configuration", lambda c: tr(c).update_key_configuration("k", deletion_allowed=True, min_decryption_version=1, mount_point=m), volatile=RANDOM)
        r.hvac("generate_data_key", lambda c: tr(c).generate_data_key("k", key_type="plaintext", mount_point=m), volatile=RANDOM | {"plaintext"})
        r.hvac("generate_random_bytes", lambda c: tr(c).generate_random_bytes(n_bytes=16, mount_point=m), volatile=RANDOM)
        r.hvac("hash_data", lambda c: tr(c).hash_data(hash_input=pt, algorithm="sha2-512", mount_point=m))
        mac = r.hvac("generate_hmac", lambda c: tr(c).generate_hmac("k", hash_input=pt, mount_point=m), volatile=RANDOM)["data"]["hmac"]
        res = r.hvac("verify_signed_data hmac", lambda c: tr(c).verify_signed_data("k", hash_input=pt, hmac=mac, mount_point=m))
        assert res["data"]["valid"] is True
        sig = r.hvac("sign_data", lambda c: tr(c).sign_data("rk", hash_input=pt, signature_algorithm="pkcs1v15", mount_point=m), volatile=RANDOM)["data"]["signature"]
        res = r.hvac("verify_signed_data", lambda c: tr(c).verify_signed_data("rk", hash_input=pt, signature=sig, signature_algorithm="pkcs1v15", mount_point=m))
        assert res["data"]["valid"] is True
        r.hvac("export_key", lambda c: tr(c).export_key("rk", key_type="public-key", mount_point=m), volatile=RANDOM)
        r.hvac("trim_key", lambda c: tr(c).trim_key("k", min_version=1, mount_point=m))
        r.hvac("read_key missing", lambda c: tr(c).read_key("nope", mount_point=m))
        r.hvac("decrypt_data bad", lambda c: tr(c).decrypt_data("k", ciphertext="vault:v1:AAAA", mount_point=m))
        r.hvac("delete_key", lambda c: tr(c).delete_key("k", mount_point=m))
        _disable(r, m)

    pair.run(scenario)


def _bao(bao_bin: Path, t, home: Path, *args: str) -> tuple[int, str]:
    env = clean_env({"VAULT_ADDR": t.addr, "VAULT_TOKEN": t.token, "HOME": str(home), "NO_COLOR": "1"})
    p = subprocess.run([str(bao_bin), *args], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout + p.stderr


def test_transit_through_the_bao_cli(bao_bin, pair, tmp_path):
    key = uid("cli")
    m = f"transit-{key}"

    def session(t) -> list[tuple[str, int, object]]:
        out = []

        def run(label, *args, volatile=frozenset()):
            rc, text = _bao(bao_bin, t, tmp_path, *args)
            try:
                val = normalize(json.loads(text), frozenset(volatile))
            except ValueError:
                val = text.strip().splitlines()[-1:] if text.strip() else []
            out.append((label, rc, val))
            return rc, text

        run("enable", "secrets", "enable", f"-path={m}", "transit")
        run("create key", "write", "-f", "-format=json", f"{m}/keys/k", volatile=RANDOM)
        run("create ecdsa", "write", "-format=json", f"{m}/keys/sig", "type=ecdsa-p256", volatile=RANDOM)
        run("read key", "read", "-format=json", f"{m}/keys/k", volatile=RANDOM)
        run("list keys", "list", "-format=json", f"{m}/keys")
        rc, text = run("encrypt", "write", "-format=json", f"{m}/encrypt/k", f"plaintext={b64('cli secret')}", volatile=RANDOM)
        ct = json.loads(text)["data"]["ciphertext"]
        rc, text = run("decrypt", "write", "-format=json", f"{m}/decrypt/k", f"ciphertext={ct}")
        assert json.loads(text)["data"]["plaintext"] == b64("cli secret")
        run("decrypt field", "write", "-field=plaintext", f"{m}/decrypt/k", f"ciphertext={ct}")
        run("rotate", "write", "-f", "-format=json", f"{m}/keys/k/rotate", volatile=RANDOM)
        rc, text = run("sign", "write", "-format=json", f"{m}/sign/sig", f"input={b64('x')}", volatile=RANDOM)
        sig = json.loads(text)["data"]["signature"]
        run("verify", "write", "-format=json", f"{m}/verify/sig", f"input={b64('x')}", f"signature={sig}")
        run("hash", "write", "-format=json", f"{m}/hash", f"input={b64('x')}")
        run("random", "write", "-format=json", f"{m}/random/8", volatile=RANDOM)
        run("decrypt missing key", "write", f"{m}/decrypt/nope", "ciphertext=vault:v1:AAAA")
        run("delete refused", "delete", f"{m}/keys/k")
        run("disable", "secrets", "disable", m)
        return out

    ref = session(pair.openbao)
    if pair.lockana is None:
        return
    got = session(pair.lockana)
    problems = [
        f"[{a[0]}] openbao rc={a[1]} {json.dumps(a[2])[:300]}\n   lockana rc={b[1]} {json.dumps(b[2])[:300]}"
        for a, b in zip(ref, got)
        if a[1] != b[1] or a[2] != b[2]
    ]
    assert not problems, "\n".join(problems)


# --- Lockana only -------------------------------------------------------------------


def test_lockana_transit_signatures_verify_with_the_cryptography_package(lockana):
    """A signature made by Lockana verifies with `cryptography` given the exported key."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding

    h = lockana.http
    m = f"transit-{uid('x')}"
    assert h.post(f"sys/mounts/{m}", {"type": "transit"}).status_code == 204
    msg = b"signed by lockana"
    for t in ASYM + ["rsa-3072"]:
        assert h.post(f"{m}/keys/{t}", {"type": t}).status_code == 200
        pem = h.get(f"{m}/export/public-key/{t}", params={"format": "pem"}).json()["data"]["keys"]["1"]
        if t == "ed25519":
            raw = h.get(f"{m}/export/public-key/{t}").json()["data"]["keys"]["1"]
            assert serialization.load_pem_public_key(pem.encode()).public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            ) == base64.b64decode(raw)
        pub = serialization.load_pem_public_key(pem.encode())
        variants = [("sha2-256", "pss", hashes.SHA256()), ("sha2-512", "pss", hashes.SHA512())]
        if t.startswith("rsa"):
            variants.append(("sha2-384", "pkcs1v15", hashes.SHA384()))
        for alg, sig_alg, hobj in variants:
            r = h.post(f"{m}/sign/{t}", {"input": b64(msg), "hash_algorithm": alg, "signature_algorithm": sig_alg})
            assert r.status_code == 200, r.text
            sig = base64.b64decode(r.json()["data"]["signature"].split(":", 2)[2])
            if t == "ed25519":
                pub.verify(sig, msg)
            elif t.startswith("ecdsa"):
                pub.verify(sig, msg, ec.ECDSA(hobj))
            elif sig_alg == "pss":
                pub.verify(sig, msg, padding.PSS(mgf=padding.MGF1(hobj), salt_length=padding.PSS.AUTO), hobj)
            else:
                pub.verify(sig, msg, padding.PKCS1v15(), hobj)
    # RSA-OAEP: a ciphertext made with the exported public key decrypts in Lockana.
    pem = h.get(f"{m}/export/public-key/rsa-2048").json()["data"]["keys"]["1"]
    pub = serialization.load_pem_public_key(pem.encode())
    ct = pub.encrypt(b"to lockana", padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    r = h.post(f"{m}/decrypt/rsa-2048", {"ciphertext": "vault:v1:" + b64(ct)})
    assert base64.b64decode(r.json()["data"]["plaintext"]) == b"to lockana"
    # An exported private key signs what Lockana verifies.
    assert h.post(f"{m}/keys/exp", {"type": "ecdsa-p384", "exportable": True}).status_code == 200
    priv_pem = h.get(f"{m}/export/signing-key/exp").json()["data"]["keys"]["1"]
    priv = serialization.load_pem_private_key(priv_pem.encode(), password=None)
    sig = priv.sign(msg, ec.ECDSA(hashes.SHA256()))
    r = h.post(f"{m}/verify/exp", {"input": b64(msg), "signature": "vault:v1:" + b64(sig)})
    assert r.json()["data"]["valid"] is True
    h.delete(f"sys/mounts/{m}")


def test_lockana_transit_audit_hmacs_plaintext_and_ciphertext(lockana, tmp_path):
    """The audit log holds neither a plaintext nor a ciphertext, only their HMACs."""
    h = lockana.http
    m = f"transit-{uid('a')}"
    log = tmp_path / "audit.log"
    dev = uid("aud")
    assert h.put(f"sys/audit/{dev}", {"type": "file", "options": {"file_path": str(log)}}).status_code == 204
    try:
        assert h.post(f"sys/mounts/{m}", {"type": "transit"}).status_code == 204
        pt = b64("audit-canary-plaintext")
        r = h.post(f"{m}/encrypt/k", {"plaintext": pt})
        ct = r.json()["data"]["ciphertext"]
        r = h.post(f"{m}/decrypt/k", {"ciphertext": ct})
        assert r.json()["data"]["plaintext"] == pt
        text = log.read_text()
        assert pt not in text and ct not in text and ct.split(":")[2] not in text
        entries = [json.loads(line) for line in text.splitlines() if f"{m}/" in line]
        assert any(e.get("request", {}).get("data", {}).get("plaintext", "").startswith("hmac-sha256:") for e in entries)
        assert any(e.get("response", {}).get("data", {}).get("ciphertext", "").startswith("hmac-sha256:") for e in entries)
    finally:
        h.delete(f"sys/audit/{dev}")
        h.delete(f"sys/mounts/{m}")
