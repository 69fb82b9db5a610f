"""Side-by-side load benchmark: Switchboard beside its ceiling and beside LiteLLM's proxy.

One upstream, each system alone under open-loop k6 load from 256 client
connections, offered rates climbing until the system stops keeping up. The
question it answers: how much of the machine does Switchboard leave unused
(against a bare grpc.aio server), how much faster than LiteLLM's proxy is it,
and what does it add to a call's latency (against the upstream called
directly). Run with `make bench-compare`; see __main__.py for the options.
"""
