"""Peers for the service-check tests: real servers the probes are proved against.

* ``kamailio.cfg`` + :mod:`tests.peers.kamailio` — a real SIP stack (Debian ``kamailio``,
  ``kamailio-tls-modules``) on loopback: 200 over UDP/TCP/TLS, 404, only 100 Trying.
* ``sipp_options_uas.xml`` — sipp (Debian ``sip-tester``) as a UAS answering OPTIONS.
* :mod:`tests.peers.faults` — a separate process with HTTP(S) servers (certificates valid,
  expiring, expired, for another host, untrusted, self-signed) and misbehaving TCP
  servers (silent, resetting, trickling, endless, garbage). A separate process so that
  the tests' count of their own open file descriptors sees only the probes' sockets.
* :mod:`tests.peers.certs` — the test certificates (trustme), made per test session.

Everything listens on 127.0.0.1 only, on ports the kernel picks.
"""
