#!/usr/bin/python3
"""A grpcurl-like client that shares no code with vcstor: Debian's python3-grpcio and
python3-protobuf only. It finds services through server reflection, builds message
types from the descriptors the server sends, and calls methods with JSON.

  grpc_probe.py ADDRESS list                      services, one per line
  grpc_probe.py ADDRESS health [SERVICE]          grpc.health.v1 status name
  grpc_probe.py ADDRESS call SERVICE/METHOD JSON  a unary call; the response as JSON
Exit 0 on success; on a gRPC error, prints "ERROR <CODE> <details>" and exits 3.
mTLS when VCSTOR_PROBE_CA, VCSTOR_PROBE_CERT and VCSTOR_PROBE_KEY name PEM files
(the agents' default); plaintext otherwise.
"""
import os
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

REFLECTION = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
HEALTH = "/grpc.health.v1.Health/Check"


def varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def fields(buf):
    """Yield (field number, wire type, value) of a protobuf message, without a schema."""
    i = 0
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, i = varint(buf, i)
        elif wt == 2:
            n, i = varint(buf, i)
            val, i = buf[i:i + n], i + n
        elif wt == 1:
            val, i = buf[i:i + 8], i + 8
        elif wt == 5:
            val, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("unsupported wire type %d" % wt)
        yield num, wt, val


def ldelim(num, payload):
    out, n = bytearray([(num << 3) | 2]), len(payload)
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out) + payload


def reflect(channel, request):
    call = channel.stream_stream(REFLECTION, request_serializer=None, response_deserializer=None)
    (response,) = list(call(iter([request]), timeout=5))
    return response


def list_services(channel):
    resp = reflect(channel, ldelim(7, b""))  # list_services = ""
    for num, _, val in fields(resp):
        if num == 7:
            raise RuntimeError("reflection error: %r" % val)
        if num == 6:  # list_services_response
            for n2, _, svc in fields(val):
                if n2 == 1:
                    yield dict((n3, v3) for n3, _, v3 in fields(svc))[1].decode()


def load_descriptors(channel, symbol, pool):
    resp = reflect(channel, ldelim(4, symbol.encode()))  # file_containing_symbol
    files = []
    for num, _, val in fields(resp):
        if num == 7:
            raise RuntimeError("reflection error for %s" % symbol)
        if num == 4:  # file_descriptor_response
            files += [v for n2, _, v in fields(val) if n2 == 1]
    protos = {}
    for raw in files:
        fdp = descriptor_pb2.FileDescriptorProto.FromString(raw)
        protos[fdp.name] = fdp
    added = set()

    def add(name):
        if name in added or name not in protos:
            return
        for dep in protos[name].dependency:
            add(dep)
        pool.Add(protos[name])
        added.add(name)

    for name in protos:
        add(name)


def main(argv):
    address, command = argv[1], argv[2]
    tls = [os.environ.get("VCSTOR_PROBE_" + k) for k in ("CA", "KEY", "CERT")]
    if all(tls):
        ca, key, cert = (open(f, "rb").read() for f in tls)
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(ca, key, cert))
    else:
        channel = grpc.insecure_channel(address)
    try:
        if command == "list":
            for name in sorted(list_services(channel)):
                print(name)
        elif command == "health":
            service = argv[3] if len(argv) > 3 else ""
            call = channel.unary_unary(HEALTH, request_serializer=None, response_deserializer=None)
            resp = call(ldelim(1, service.encode()) if service else b"", timeout=5)
            status = dict((n, v) for n, _, v in fields(resp)).get(1, 0)
            print({0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}[status])
        elif command == "call":
            service, method = argv[3].rsplit("/", 1)
            pool = descriptor_pool.DescriptorPool()
            load_descriptors(channel, service, pool)
            m = pool.FindServiceByName(service).FindMethodByName(method)
            factory = message_factory.MessageFactory(pool)
            req_cls = factory.GetPrototype(m.input_type)
            res_cls = factory.GetPrototype(m.output_type)
            request = json_format.Parse(argv[4] if len(argv) > 4 else "{}", req_cls())
            call = channel.unary_unary("/%s/%s" % (service, method),
                                       request_serializer=lambda msg: msg.SerializeToString(),
                                       response_deserializer=res_cls.FromString)
            print(json_format.MessageToJson(call(request, timeout=10)))
        else:
            print(__doc__)
            return 2
    except grpc.RpcError as err:
        print("ERROR %s %s" % (err.code().name, err.details()))
        return 3
    finally:
        channel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
