#!/usr/bin/python3
"""An attacker against a running tinyfed aggregator, on Debian's python3-grpcio.

It holds one enrollment token (an insider: a stolen or misused gateway) and
knows the honest devices' ids. It tries every refusal path of
aggregator/server.h and prints one line per attack with the status codes it
got; it exits 1 if any attack got anything but the expected refusal.

    attacker.py --stubs DIR --address HOST:PORT --ca cert.pem --token T \
                --victim clinic-00 --seconds 20
"""
import argparse
import collections
import os
import sys
import threading
import time

import grpc
import nacl.signing

SERVICE = "/tinyfed.v1.Aggregator/"
SIGNATURE_KEY = "tinyfed-signature-bin"


class Attacker:
    def __init__(self, args):
        sys.path.insert(0, args.stubs)
        global pb
        from tinyfed.v1 import service_pb2 as pb  # generated from proto/ by the test
        with open(args.ca, "rb") as f:
            self.channel = grpc.secure_channel(args.address, grpc.ssl_channel_credentials(f.read()))
        self.args = args
        self.key = nacl.signing.SigningKey.generate()
        self.device = "attacker-" + os.urandom(4).hex()
        self.failures = []
        self.lines = []

    # Raw bytes in and out, so that the attacker controls every byte.
    def call(self, method, data, signature=None):
        rpc = self.channel.unary_unary(SERVICE + method, request_serializer=None, response_deserializer=None)
        metadata = [(SIGNATURE_KEY, signature)] if signature is not None else []
        try:
            rpc(data, metadata=metadata, timeout=10)
            return grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e.code()

    def sign(self, method, request, key=None, skew_ms=0, device=None):
        request.header.device_id = device or self.device
        request.header.nonce = os.urandom(16)
        request.header.timestamp_ms = int(time.time() * 1000) + skew_ms
        data = request.SerializeToString()
        message = b"tinyfed request v1\0" + (SERVICE + method).encode() + b"\0" + data
        return data, (key or self.key).sign(message).signature

    def expect(self, name, got, *wanted):
        self.check(name, got in wanted, got.name)

    def check(self, name, ok, shown):
        self.lines.append(f"{'ok  ' if ok else 'FAIL'} {name}: {shown}")
        if not ok:
            self.failures.append(name)

    def checkin(self, phase=None):
        r = pb.CheckInRequest()
        r.header.phase = phase or pb.PHASE_CHECK_IN
        return r

    def chunk(self):
        r = pb.ModelChunkRequest()
        r.header.phase = pb.PHASE_MODEL_DOWNLOAD
        r.version = 1
        r.max_bytes = 64
        return r

    def enroll(self, token, key, device):
        r = pb.EnrollRequest(device_id=device, token=token, device_public_key=bytes(key.verify_key))
        r.proof = key.sign(b"tinyfed enroll v1\0" + device.encode() + b"\0" + token.encode()).signature
        return self.call("Enroll", r.SerializeToString())

    def run_checks(self):
        stranger = nacl.signing.SigningKey.generate()
        # Unenrolled calls: unsigned, and signed by a key nobody enrolled.
        data, _ = self.sign("CheckIn", self.checkin())
        self.expect("unenrolled, unsigned", self.call("CheckIn", data), grpc.StatusCode.UNAUTHENTICATED)
        data, sig = self.sign("CheckIn", self.checkin(), key=stranger)
        self.expect("unenrolled, signed", self.call("CheckIn", data, sig), grpc.StatusCode.UNAUTHENTICATED)
        # Enrollment: guessed token, then the real one, then the real one again for another key.
        self.expect("enroll with a guessed token", self.enroll("00" * 32, self.key, self.device),
                    grpc.StatusCode.UNAUTHENTICATED)
        self.expect("enroll with the stolen token", self.enroll(self.args.token, self.key, self.device),
                    grpc.StatusCode.OK)
        self.expect("enroll again with a used token", self.enroll(self.args.token, stranger, self.device + "x"),
                    grpc.StatusCode.UNAUTHENTICATED)
        # Forged device ids: the insider's key claims to be an honest clinic.
        data, sig = self.sign("CheckIn", self.checkin(), device=self.args.victim)
        self.expect("forged device id", self.call("CheckIn", data, sig), grpc.StatusCode.UNAUTHENTICATED)
        # Replayed signatures.
        data, sig = self.sign("GetModelChunk", self.chunk())
        self.expect("genuine insider call", self.call("GetModelChunk", data, sig), grpc.StatusCode.OK)
        self.expect("replayed call", self.call("GetModelChunk", data, sig), grpc.StatusCode.UNAUTHENTICATED)
        self.expect("replayed signature, other body", self.call("GetModelChunk", data[:-1] + b"\x01", sig),
                    grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT)
        data, sig = self.sign("Await", pb.AwaitRequest())
        self.expect("signature of another method", self.call("GetModelChunk", data, sig),
                    grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT)
        data, sig = self.sign("GetModelChunk", self.chunk(), skew_ms=-600_000)
        self.expect("stale timestamp", self.call("GetModelChunk", data, sig), grpc.StatusCode.UNAUTHENTICATED)
        # Oversized and malformed messages.
        self.expect("2 MB check-in", self.call("CheckIn", os.urandom(2 << 20)), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.expect("16 MB submit", self.call("Submit", b"\0" * (16 << 20)), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.expect("garbage bytes", self.call("CheckIn", b"\xff\xff\xff\xff garbage"), grpc.StatusCode.INVALID_ARGUMENT)
        bad_utf8 = b"\x0a\x04\x0a\x02\xff\xfe"  # header { device_id: "\xff\xfe" }
        self.expect("invalid UTF-8 device id", self.call("CheckIn", bad_utf8), grpc.StatusCode.INVALID_ARGUMENT)
        # Out-of-phase calls by the enrolled insider (who never checks in,
        # so that it stays out of the honest cohort).
        data, sig = self.sign("CheckIn", self.checkin(phase=pb.PHASE_UNMASKING))
        self.expect("check-in claiming the unmasking phase", self.call("CheckIn", data, sig),
                    grpc.StatusCode.INVALID_ARGUMENT)
        await_task = pb.AwaitRequest()
        await_task.header.round_id = 999
        await_task.header.phase = pb.PHASE_TASK
        data, sig = self.sign("Await", await_task)
        self.expect("await a round that is not running", self.call("Await", data, sig),
                    grpc.StatusCode.FAILED_PRECONDITION)
        submit = pb.SubmitRequest()
        submit.header.round_id = 1
        submit.header.phase = pb.PHASE_ADVERTISE_KEYS
        submit.message.round_id = 1
        submit.message.advertise_keys.encryption_public_key = os.urandom(32)
        submit.message.advertise_keys.masking_public_key = os.urandom(32)
        data, sig = self.sign("Submit", submit)
        self.expect("advertise keys outside the cohort", self.call("Submit", data, sig),
                    grpc.StatusCode.FAILED_PRECONDITION)

    def flood(self, seconds):
        """Threads of unauthenticated garbage and the insider's signed calls."""
        counts = collections.Counter()
        lock = threading.Lock()
        end = time.time() + seconds

        def garbage():
            while time.time() < end:
                got = self.call("CheckIn", os.urandom(200))
                # A made-up device id each time: the log must not grow with them.
                data, _ = self.sign("Await", pb.AwaitRequest(), device="ghost-" + os.urandom(6).hex())
                got2 = self.call("Await", data)
                with lock:
                    counts[("garbage", got)] += 1
                    counts[("unsigned", got2)] += 1

        def enroller():
            while time.time() < end:
                got = self.enroll(os.urandom(32).hex(), nacl.signing.SigningKey.generate(),
                                  "ghost-" + os.urandom(6).hex())
                with lock:
                    counts[("enroll", got)] += 1

        def insider():
            # Bursts of concurrent calls, so that the flood outruns the
            # bucket's refill (20 a second) however slowly this machine signs
            # and sends; past the flood's end until limited. Only the
            # per-device limit counts, not the server's concurrency limit.
            rpc = self.channel.unary_unary(SERVICE + "GetModelChunk", request_serializer=None,
                                           response_deserializer=None)
            # Only answered calls count: under the connection flood many are
            # dropped (UNAVAILABLE) before they reach the limiter.
            answered = 0
            give_up = end + 60
            while time.time() < end or (answered < 3000 and time.time() < give_up and
                                        not counts[("insider", grpc.StatusCode.RESOURCE_EXHAUSTED)]):
                burst = [self.sign("GetModelChunk", self.chunk()) for _ in range(100)]
                futures = [rpc.future(data, metadata=[(SIGNATURE_KEY, sig)], timeout=10) for data, sig in burst]
                for f in futures:
                    kind = "insider"
                    try:
                        f.result()
                        got = grpc.StatusCode.OK
                    except grpc.RpcError as e:
                        got = e.code()
                        if got == grpc.StatusCode.RESOURCE_EXHAUSTED and "requests per minute" not in e.details():
                            kind = "insider, server busy"
                    answered += got in (grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED)
                    with lock:
                        counts[(kind, got)] += 1

        threads = [threading.Thread(target=garbage) for _ in range(6)] + [
            threading.Thread(target=insider), threading.Thread(target=enroller)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = sum(counts.values())
        for (kind, code), n in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1].name)):
            self.lines.append(f"     flood {kind}: {n} x {code.name}")
        accepted = sum(counts[(kind, grpc.StatusCode.OK)] for kind in ("garbage", "unsigned", "enroll"))
        self.check(f"flood of {total} calls, none of the unauthenticated ones accepted", accepted == 0,
                   f"{accepted} accepted")
        limited = counts[("insider", grpc.StatusCode.RESOURCE_EXHAUSTED)]
        self.check("the insider's flood is rate limited", limited > 0, f"{limited} x RESOURCE_EXHAUSTED")
        return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stubs", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--victim", required=True)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    attacker = Attacker(args)
    attacker.run_checks()
    total = attacker.flood(args.seconds)
    print("\n".join(attacker.lines))
    print(f"attacker: {len(attacker.failures)} unexpected answers, {total} flood calls")
    return 1 if attacker.failures else 0


if __name__ == "__main__":
    sys.exit(main())
