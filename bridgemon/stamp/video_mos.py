"""A MOS-style score for video: ITU-T G.1070's video quality estimate Vq.

ITU-T Recommendation G.1070, "Opinion model for video-telephony applications" (2012),
§ "Video quality estimation function" estimates the quality of a videophone stream from
its bit rate ``Br`` (kbit/s), frame rate ``Fr`` (frames/s) and packet loss ``Ppl`` (%)::

    Ofr    = v1 + v2·Br                                 (optimal frame rate, 1 ≤ Ofr ≤ 30)
    IOfr   = v3 − v3 / (1 + (Br / v4)^v5)               (coding quality at Ofr, 0 ≤ IOfr ≤ 4)
    DFrV   = v6 + v7·Br                                 (frame-rate robustness)
    Icod   = IOfr · exp(−(ln Fr − ln Ofr)² / (2·DFrV²))
    DPplV  = v10 + v11·exp(−Fr / v8) + v12·exp(−Br / v9)  (loss robustness)
    Vq     = 1 + Icod · exp(−Ppl / DPplV)                (1 … 5)

with the coefficient set the Recommendation gives as its example (Appendix I; the set
reproduced throughout the literature on G.1070): v1 = 1.431, v2 = 2.228·10⁻², v3 = 3.759,
v4 = 184.1, v5 = 1.161, v6 = 1.446, v7 = 3.881·10⁻⁴, v8 = 2.116, v9 = 467.4, v10 = 2.736,
v11 = 15.28, v12 = 4.170. Those coefficients were fitted to one codec and screen size, so
the score ranks paths (a 2 Mbit/s stream: 4.5 at no loss, about 3.5 at 1 %, 2.7 at 2 %,
1.6 at 5 %); it is not a calibrated prediction for any particular endpoint. Delay is not
part of Vq: the round-trip delay is judged on its own.

Used as: ``Br`` = the train's bit rate, ``Fr`` = 25 frames/s (the PAL rate of the
province's conference endpoints), ``Ppl`` = the loss of the direction judged.
"""

from __future__ import annotations

import math

V = (1.431, 2.228e-2, 3.759, 184.1, 1.161, 1.446, 3.881e-4, 2.116, 467.4, 2.736, 15.28, 4.170)
FRAME_RATE = 25.0


def video_mos(bitrate_bps: float, loss_ratio: float, frame_rate: float = FRAME_RATE) -> float:
    """G.1070's Vq for a stream of ``bitrate_bps`` losing ``loss_ratio`` of its packets."""
    v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12 = V
    br = max(bitrate_bps / 1000.0, 1e-3)
    fr = max(frame_rate, 1e-3)
    ppl = min(max(loss_ratio, 0.0), 1.0) * 100.0
    ofr = min(max(v1 + v2 * br, 1.0), 30.0)
    iofr = min(max(v3 - v3 / (1.0 + (br / v4) ** v5), 0.0), 4.0)
    dfrv = v6 + v7 * br
    icoding = iofr * math.exp(-((math.log(fr) - math.log(ofr)) ** 2) / (2.0 * dfrv**2))
    dpplv = v10 + v11 * math.exp(-fr / v8) + v12 * math.exp(-br / v9)
    return float(1.0 + icoding * math.exp(-ppl / dpplv))
