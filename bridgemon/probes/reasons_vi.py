"""The probes' reasons in Vietnamese, for the technician's side of every page and report.

The probes word their reasons in English (logs, the English side of the API, the CLI);
a technician reads them in Vietnamese. Rather than a second wording at every raise, the
common phrases (refused, timeout, unreachable, DNS, TLS and certificates, HTTP and SIP
status) are translated here, once, from the English the probes build (conn.py,
failures.py, tcp/http/sip.py): a reason stays one string made in one place. A phrase
missing from this table shows up as English in the Vietnamese text, which
tests/test_reasons_vi.py looks for. Labels ("H.323 1720", "HTTPS 443", "SIP OPTIONS"),
status codes, names and the device's own words stay as they are.

Pure string functions with no imports from the probes, so readiness (pure too) uses them.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_PHASES_VI = {
    "looking up the name": "khi tra tên miền",
    "connecting": "khi kết nối",
    "in the TLS handshake": "khi bắt tay TLS",
    "in the handshake": "khi bắt tay TLS",
    "sending the request": "khi gửi yêu cầu",
    "sending": "khi gửi",
    "waiting for the response": "khi chờ trả lời",
    "waiting for the answer": "khi chờ trả lời",
    "reading the body": "khi đọc nội dung",
    "reading the response headers": "khi đọc phần đầu trả lời",
}
_PHASE = "|".join(re.escape(phase) for phase in sorted(_PHASES_VI, key=len, reverse=True))


def _seconds(match: re.Match[str]) -> str:
    return match.group(1).replace(".", ",") + " giây"


_VI: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = tuple(
    (re.compile(pattern), words) for pattern, words in (
        # names (first: a DNS timeout is worded as one)
        (r"DNS lookup of (\S+) timed out after ([\d.]+) s",
         lambda m: f"tra DNS tên {m.group(1)} quá thời gian chờ "
                   f"{m.group(2).replace('.', ',')} giây"),
        (r"DNS lookup of (\S+) returned no IPv4 or IPv6 address",
         r"tra DNS tên \1 không có địa chỉ IPv4 hay IPv6"),
        (r"DNS lookup of (\S+) (?:failed|impossible): (?:Name or service not known|"
         r"No address associated with hostname|nodename nor servname provided, or not known)",
         r"tra DNS không thấy tên \1"),
        (r"DNS lookup of (\S+) (?:failed|impossible): Temporary failure in name resolution",
         r"tra DNS tên \1 thất bại: máy chủ DNS không trả lời"),
        (r"DNS lookup of (\S+) (?:failed|impossible): ", r"tra DNS tên \1 thất bại: "),
        # timeouts, with the phase the check was in
        (rf"timed out after ([\d.]+) s (?:while )?({_PHASE})",
         lambda m: f"quá thời gian chờ {_seconds(m)} {_PHASES_VI[m.group(2)]}"),
        (r"timed out after ([\d.]+) s", lambda m: f"quá thời gian chờ {_seconds(m)}"),
        (rf" while ({_PHASE})", lambda m: f" {_PHASES_VI[m.group(1)]}"),
        (rf" ({_PHASE})$", lambda m: f" {_PHASES_VI[m.group(1)]}"),
        # ICMP errors a router or the site sent back (icmp_packets.py), and the pinger's
        (r"no reply to (\d+) echoes within ([\d.]+) s",
         lambda m: f"không phản hồi {m.group(1)} gói ping trong "
                   f"{m.group(2).replace('.', ',')} giây"),
        (r"TTL exceeded in transit \(routing loop\?\)|"
         r"hop limit exceeded in transit \(routing loop\?\)",
         "hết TTL trên đường đi (định tuyến bị vòng?)"),
        (r"(?:packet too big|fragmentation needed) \(MTU too small on the path\)",
         "gói quá lớn (MTU trên đường truyền quá nhỏ)"),
        (r"(?:network|host|communication) administratively prohibited(?: \(filtered\))?",
         "bị chặn theo chính sách mạng (lọc gói)"),
        (r"no route to destination", "không có tuyến tới thiết bị"),
        (r"address unreachable", "không tới được địa chỉ"),
        (r"protocol unreachable", "thiết bị không nhận giao thức này"),
        (r"(?<!ICMP )port unreachable", "cổng không mở"),
        (r"destination unreachable \(code (\d+)\)", r"không tới được đích (mã \1)"),
        (r" \(from ([^)]+)\)", r" (do \1 báo)"),
        (r"send failed: ", "gửi thất bại: "),
        # the connection
        (r"connection refused", "thiết bị từ chối kết nối (không có dịch vụ ở cổng này)"),
        (r"connection reset by the server", "thiết bị ngắt kết nối"),
        (r"host unreachable", "không tới được thiết bị"),
        (r"network unreachable", "không tới được mạng của thiết bị"),
        (r"host down", "thiết bị không hoạt động"),
        (r"network down", "mạng không hoạt động"),
        (r"no local address to reach it from", "máy giám sát không có địa chỉ để tới thiết bị"),
        (r"blocked by the local firewall", "bị tường lửa của máy giám sát chặn"),
        (r"connect failed: ", "kết nối thất bại: "),
        (r"nothing listens on (UDP \d+) \(ICMP port unreachable\)",
         r"không có dịch vụ ở \1 (thiết bị báo ICMP port unreachable)"),
        (r"connection closed without a response", "thiết bị đóng kết nối mà không trả lời"),
        (r"the server closed the (\S+) connection without an answer",
         r"thiết bị đóng kết nối \1 mà không trả lời"),
        (r"connection closed in the middle of the response headers",
         "thiết bị đóng kết nối giữa chừng khi gửi phần đầu trả lời"),
        (r"connection closed (?:in the middle of a chunked body|after .* body bytes)",
         "thiết bị đóng kết nối giữa chừng khi gửi nội dung"),
        # TLS and certificates
        (r"TLS handshake failed \(", "bắt tay TLS thất bại ("),
        (r" — is this port speaking TLS\?", " — cổng này có dùng TLS không?"),
        (r" — the peer's TLS version is too old or too new",
         " — phiên bản TLS của thiết bị quá cũ hoặc quá mới"),
        (r"TLS error", "lỗi TLS"),
        (r"certificate expired on ", "chứng thư số đã hết hạn ngày "),
        (r"certificate expired", "chứng thư số đã hết hạn"),
        (r"certificate not valid before ", "chứng thư số chưa có hiệu lực trước ngày "),
        (r"certificate not yet valid", "chứng thư số chưa có hiệu lực"),
        (r"certificate is for (.+), not (\S+)", r"chứng thư số cấp cho \1, không phải \2"),
        (r"certificate does not match ", "chứng thư số không khớp tên "),
        (r"certificate not trusted \(issued by an unknown authority(: )?",
         lambda m: "chứng thư số không được tin cậy (do tổ chức không rõ cấp"
                   + (": " if m.group(1) else "")),
        (r"certificate rejected \(", "chứng thư số bị từ chối ("),
        (r"certificate expires in (\d+) days?", r"chứng thư số hết hạn sau \1 ngày"),
        (r"certificate expires in (\d+) hours?", r"chứng thư số hết hạn sau \1 giờ"),
        # answers: HTTP and SIP status codes
        (r"status (\d{3}) \(redirect to (.*)\), expected ",
         r"trả về mã \1 (chuyển hướng tới \2), cần mã "),
        (r"status (\d{3}), expected ", r"trả về mã \1, cần mã "),
        (r"answered (.+), expected ", r"trả lời \1, cần mã "),
        (r"only provisional (.+) in ([\d.]+) s, no final answer",
         lambda m: f"chỉ nhận trả lời tạm {m.group(1)} trong "
                   f"{m.group(2).replace('.', ',')} giây, không có trả lời cuối"),
        (r"no valid answer in ([\d.]+) s",
         lambda m: f"không có trả lời hợp lệ trong {_seconds(m)}"),
        (r"no answer in ([\d.]+) s", lambda m: f"không có trả lời trong {_seconds(m)}"),
        (r"answer incomplete after ([\d.]+) s: ",
         lambda m: f"trả lời chưa trọn sau {_seconds(m)}: nhận được "),
        (r"(\d{3}) or (\d{3})", r"\1 hoặc \2"),
        (r"more than (\d+) redirects \(last to (.*)\)",
         r"quá \1 lần chuyển hướng (cuối cùng tới \2)"),
        (r"response headers larger than (\d+) KiB", r"phần đầu trả lời lớn hơn \1 KiB"),
        (r"internal error: ", "lỗi nội bộ của bridgemon: "),
        (r"bad URL: ", "URL không hợp lệ: "),
        (r"redirect to an unusable URL: ", "chuyển hướng tới URL không dùng được: "),
        (r"cannot open a UDP socket here: ", "máy giám sát không mở được socket UDP: "),
        (r"not a SIP answer on (\S+): ", r"không phải trả lời SIP trên \1: "),
    )
)


def in_vietnamese(reason: str) -> str:
    """A probe's English reason in Vietnamese (labels, codes and names kept)."""
    for pattern, words in _VI:
        reason = pattern.sub(words, reason)
    return reason
