#!/usr/bin/env python3
"""Writes the PyTorch reference values that tests/test_reference.cpp checks nanode against.

Run with Debian's PyTorch (apt install python3-torch), from anywhere:

    python3 tests/reference/make_reference.py

Each case is one small safetensors file in this folder holding, in float64:
  param.<name>   the parameters, named as nanode's modules name them (loaded with load_state_dict)
  input.<name>   inputs (x0, images, labels, loss weights)
  expect.<name>  outputs and the loss
  grad.<name>    d loss / d (every parameter and x0), by direct backprop in PyTorch
and metadata saying what to build. The models are written here from their equations
(DESIGN.md and the comments in nanode's headers), not from nanode's code: the bases
of timevarying/basis.hpp, the dynamics of timevarying/families.hpp, the stage
times of ode/odeint.hpp (a stage at the start or end of a step is evaluated one ulp
inside it, so a bucket basis is read on the step's own side), the ALF step of
ode/alf.hpp and the classifier of models/classifier.hpp.
"""
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
HERE = os.path.dirname(os.path.abspath(__file__))


# ---- safetensors, written by hand (the format is a JSON header and raw bytes) ---------

def save(name, tensors, metadata):
    header, blobs, offset = {"__metadata__": {k: str(v) for k, v in metadata.items()}}, [], 0
    for key, t in tensors.items():
        a = np.ascontiguousarray(t.detach().cpu().numpy().astype("<f8"))
        b = a.tobytes()
        header[key] = {"dtype": "F64", "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(HERE, name + ".safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    print(f"{name}: {len(tensors)} tensors, {offset} bytes")


# ---- time bases z(t) ---------------------------------------------------------------------

def basis(kind, d, t, zeta=None, eta=None):
    if kind == "bucket":
        k = min(max(int(math.floor(t * d)), 0), d - 1)
        return [1.0 if i == k else 0.0 for i in range(d)]
    if kind == "monomial":
        return [t ** n for n in range(d)]
    if kind in ("chebyshev", "legendre"):
        u = 2.0 * t - 1.0
        z = [1.0, u][:d]
        for n in range(1, d - 1):
            z.append(2 * u * z[n] - z[n - 1] if kind == "chebyshev" else ((2 * n + 1) * u * z[n] - n * z[n - 1]) / (n + 1))
        return z
    if kind == "trig":
        z = [1.0]
        for n in range(1, d + 1):
            z += [math.cos(n * t), math.sin(n * t)]
        return z
    if kind == "random":
        return [math.cos(zeta[k] * t + eta[k]) for k in range(d)]
    raise ValueError(kind)


def basis_size(kind, d):
    return 2 * d + 1 if kind == "trig" else d


def combine(coeffs, z):
    """W = sum_k z_k A_k for A [K, ...]."""
    return sum(zk * coeffs[k] for k, zk in enumerate(z))


# ---- solvers -------------------------------------------------------------------------------

def stage_time(t, t_next, c):
    if c <= 0.0:
        return float(np.nextafter(t, t_next))
    if c >= 1.0:
        return float(np.nextafter(t_next, t))
    return t + c * (t_next - t)


TABLEAUS = {
    "euler": ([0.0], [[]], [1.0]),
    "rk4": ([0.0, 0.5, 0.5, 1.0], [[], [0.5], [0.0, 0.5], [0.0, 0.0, 1.0]], [1 / 6, 1 / 3, 1 / 3, 1 / 6]),
}


def grid(L):
    return [(1.0 - 0.0) * i / L for i in range(L + 1)]


def solve(f, x0, L, method, out_steps):
    """x at grid indices out_steps, through L uniform steps on [0, 1]."""
    g = grid(L)
    outs = {}
    x = x0
    if 0 in out_steps:
        outs[0] = x
    if method == "alf":
        v = f(stage_time(g[0], g[1], 0.0), x)
        for i in range(L):
            h = g[i + 1] - g[i]
            xh = x + v * (0.5 * h)
            v = 2.0 * f(g[i] + 0.5 * h, xh) - v
            x = xh + v * (0.5 * h)
            if i + 1 in out_steps:
                outs[i + 1] = x
        return [outs[i] for i in out_steps]
    c, a, b = TABLEAUS[method]
    for i in range(L):
        t, tn = g[i], g[i + 1]
        h = tn - t
        ks = [f(stage_time(t, tn, c[0]), x)]
        for s in range(1, len(c)):
            xi = x + sum(h * a[s][j] * ks[j] for j in range(s) if a[s][j] != 0.0)
            ks.append(f(stage_time(t, tn, c[s]), xi))
        x = x + sum(h * b[j] * ks[j] for j in range(len(c)) if b[j] != 0.0)
        if i + 1 in out_steps:
            outs[i + 1] = x
    return [outs[i] for i in out_steps]


def leaf(a):
    return torch.tensor(a, requires_grad=True)


def grads_of(loss, named):
    gs = torch.autograd.grad(loss, list(named.values()))
    return {"grad." + k: g for k, g in zip(named.keys(), gs)}


# ---- dense dynamics of every basis family ----------------------------------------------------

def dense_case(rng, family, d, method, L):
    """tv::MLPDynamics(family, {4, 5, 4}): tanh(TimeLinear) then TimeLinear (no final tanh)."""
    n, hid = 4, 5
    K = basis_size(family, d)
    zeta = eta = None
    meta = {"case": "dense", "family": family, "order": d, "method": method, "steps": L, "widths": "4,5,4",
            "times": "0,0.5,1"}
    extra = {}
    if family == "random":
        zeta = rng.normal(0.0, 1.0, d)
        eta = rng.uniform(0.0, 2 * math.pi, d)
        extra = {"input.zeta": torch.tensor(zeta), "input.eta": torch.tensor(eta)}
    p = {
        "layer0.weight_coeffs": leaf(rng.uniform(-0.6, 0.6, (K, hid, n))),
        "layer0.bias_coeffs": leaf(rng.uniform(-0.3, 0.3, (K, hid))),
        "layer1.weight_coeffs": leaf(rng.uniform(-0.6, 0.6, (K, n, hid))),
        "layer1.bias_coeffs": leaf(rng.uniform(-0.3, 0.3, (K, n))),
    }
    x0 = leaf(rng.uniform(-1, 1, (3, n)))
    w1, w2 = torch.tensor(rng.uniform(0.5, 1.5, (3, n))), torch.tensor(rng.uniform(-1, 1, (3, n)))

    def f(t, x):
        z = basis(family, d, t, zeta, eta)
        h = torch.tanh(x @ combine(p["layer0.weight_coeffs"], z).T + combine(p["layer0.bias_coeffs"], z))
        return h @ combine(p["layer1.weight_coeffs"], z).T + combine(p["layer1.bias_coeffs"], z)

    xs = solve(f, x0, L, method, [0, L // 2, L])
    loss = (w1 * xs[1]).sum() + (w2 * torch.tanh(xs[2])).sum()
    named = dict(p, x0=x0)
    out = {"param." + k: v for k, v in p.items()}
    out.update({"input.x0": x0, "input.w1": w1, "input.w2": w2, "expect.out1": xs[1], "expect.out2": xs[2],
                "expect.loss": loss.reshape(1)})
    out.update(extra)
    out.update(grads_of(loss, named))
    save(f"dense_{family}_{method}", out, meta)


# ---- the conv T-NANODE block -------------------------------------------------------------------

def conv_case(rng, method, L):
    """tv::ConvDynamics("trig", 3, 3, order 2): tanh(conv3x3(x; K(t), b(t)), padding 1)."""
    C, d = 3, 2
    K = basis_size("trig", d)
    p = {"conv.weight_coeffs": leaf(rng.uniform(-0.3, 0.3, (K, C, C, 3, 3))),
         "conv.bias_coeffs": leaf(rng.uniform(-0.2, 0.2, (K, C)))}
    x0 = leaf(rng.uniform(-1, 1, (2, C, 5, 5)))
    w = torch.tensor(rng.uniform(-1, 1, (2, C, 5, 5)))

    def f(t, x):
        z = basis("trig", d, t)
        return torch.tanh(F.conv2d(x, combine(p["conv.weight_coeffs"], z), combine(p["conv.bias_coeffs"], z), padding=1))

    (xT,) = solve(f, x0, L, method, [L])
    loss = (w * xT).sum()
    out = {"param." + k: v for k, v in p.items()}
    out.update({"input.x0": x0, "input.w": w, "expect.out": xT, "expect.loss": loss.reshape(1)})
    out.update(grads_of(loss, dict(p, x0=x0)))
    save(f"conv_trig_{method}", out, {"case": "conv", "family": "trig", "order": d, "method": method, "steps": L,
                                      "channels": C})


# ---- one training step of the Fig. 1 classifier ------------------------------------------------

def classifier_case(rng):
    """models::Classifier: t-nanode order 2, widths {4, 8}, 2 Euler steps per block, 8x8x1 images,
    3 classes; batch norm in train mode; cross-entropy; then one Adam step (lr 2e-3)."""
    widths, d, L, classes, batch = [4, 8], 2, 2, 3, 3
    K = basis_size("trig", d)
    p, buffers = {}, {}

    def conv_params(name, cin, cout, k=3):
        p[name + ".weight"] = leaf(rng.uniform(-0.4, 0.4, (cout, cin, k, k)))
        p[name + ".bias"] = leaf(rng.uniform(-0.1, 0.1, (cout,)))

    def norm_params(name, c, bn=False):
        p[name + ".weight"] = leaf(rng.uniform(0.8, 1.2, (c,)))
        p[name + ".bias"] = leaf(rng.uniform(-0.1, 0.1, (c,)))
        if bn:
            buffers[name + ".running_mean"] = torch.tensor(rng.uniform(-0.1, 0.1, (c,)))
            buffers[name + ".running_var"] = torch.tensor(rng.uniform(0.9, 1.1, (c,)))

    conv_params("stem", 1, widths[0])
    norm_params("stem_bn", widths[0], bn=True)
    for s, C in enumerate(widths):
        if s > 0:
            conv_params(f"down{s}", widths[s - 1], C)
            norm_params(f"down_bn{s}", C, bn=True)
        norm_params(f"block{s}.dynamics.norm", C)
        p[f"block{s}.dynamics.conv.weight_coeffs"] = leaf(rng.uniform(-0.25, 0.25, (K, C, C, 3, 3)))
        p[f"block{s}.dynamics.conv.bias_coeffs"] = leaf(rng.uniform(-0.1, 0.1, (K, C)))
    norm_params("head_norm", widths[-1])
    p["head.weight"] = leaf(rng.uniform(-0.5, 0.5, (classes, widths[-1])))
    p["head.bias"] = leaf(rng.uniform(-0.1, 0.1, (classes,)))
    buffers_before = {k: v.clone() for k, v in buffers.items()}

    images = torch.tensor(rng.uniform(-1, 1, (batch, 1, 8, 8)))
    labels = torch.tensor([0, 2, 1])

    def bn(x, name):
        return F.batch_norm(x, buffers[name + ".running_mean"], buffers[name + ".running_var"], p[name + ".weight"],
                            p[name + ".bias"], training=True, momentum=0.1, eps=1e-5)

    def gn(x, name, C):
        return F.group_norm(x, math.gcd(C, 8), p[name + ".weight"], p[name + ".bias"], eps=1e-5)

    h = F.max_pool2d(F.relu(bn(F.conv2d(images, p["stem.weight"], p["stem.bias"], padding=1), "stem_bn")), 2)
    for s, C in enumerate(widths):
        if s > 0:
            h = F.relu(bn(F.conv2d(h, p[f"down{s}.weight"], p[f"down{s}.bias"], stride=2, padding=1), f"down_bn{s}"))
        pre = f"block{s}.dynamics."

        def f(t, x, pre=pre, C=C):
            z = basis("trig", d, t)
            return F.conv2d(F.relu(gn(x, pre + "norm", C)), combine(p[pre + "conv.weight_coeffs"], z),
                            combine(p[pre + "conv.bias_coeffs"], z), padding=1)

        (h,) = solve(f, h, L, "euler", [L])
    logits = F.linear(F.relu(gn(h, "head_norm", widths[-1])).mean(dim=(2, 3)), p["head.weight"], p["head.bias"])
    loss = F.cross_entropy(logits, labels)
    gs = grads_of(loss, p)
    out = {"param." + k: v.detach().clone() for k, v in p.items()}  # before Adam's step: what the test loads
    out.update({"param." + k: v for k, v in buffers_before.items()})
    out.update(gs)
    out.update({"input.images": images, "input.labels": labels.double(), "expect.logits": logits,
                "expect.loss": loss.reshape(1)})
    out.update({"expect.buffer." + k: v for k, v in buffers.items()})  # running statistics after the step
    opt = torch.optim.Adam(list(p.values()), lr=2e-3)
    for k, v in p.items():
        v.grad = gs["grad." + k].clone()
    opt.step()
    out.update({"expect.after_adam." + k: v.detach().clone() for k, v in p.items()})
    save("classifier_step", out, {"case": "classifier", "model": "t-nanode", "order": d, "widths": "4,8", "steps": L,
                                  "method": "euler", "image_size": 8, "classes": classes, "lr": 2e-3})


# ---- the README's custom dynamics: weights for its example --------------------------------------

def readme_weights(rng):
    save("readme_dynamics", {"a0": torch.tensor(rng.uniform(-0.8, 0.8, (3, 3))),
                             "a1": torch.tensor(rng.uniform(-0.8, 0.8, (3, 3))),
                             "b": torch.tensor(rng.uniform(-0.3, 0.3, (3,)))}, {"case": "readme"})


def main():
    rng = np.random.default_rng(20261201)
    for family, d in [("bucket", 4), ("monomial", 3), ("chebyshev", 4), ("legendre", 4), ("trig", 3), ("random", 3)]:
        for method in ("euler", "rk4"):
            dense_case(rng, family, d, method, 8)
    dense_case(rng, "trig", 3, "alf", 8)
    for method in ("euler", "rk4"):
        conv_case(rng, method, 4)
    classifier_case(rng)
    readme_weights(rng)
    print("torch", torch.__version__)


if __name__ == "__main__":
    main()
