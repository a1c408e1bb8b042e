r"""``vae``: a small convolutional VAE of face crops, the generator of re-label distillation.

:class:`ConvVAE` maps images x (N, 3, S, S) in [0, 1] to a diagonal Gaussian posterior
q(z | x) = N(mu(x), diag(exp(logvar(x)))) over a ``latent``-dimensional z, and decodes z to
Bernoulli means x̂ = sigmoid(g(z)) (N, 3, S, S) in [0, 1]. Training minimises the negative ELBO
with a β weight (Higgins et al. 2017), per image and averaged over the batch:

    recon = mean_n Σ_{c,h,w} BCE(x_{nchw}, x̂_{nchw})          (nats per image)
    kl    = mean_n Σ_k ½ (mu_{nk}² + exp(logvar_{nk}) − 1 − logvar_{nk})   (nats per image)
    loss  = recon + beta · kl

BCE(x, x̂) = −x log x̂ − (1 − x) log(1 − x̂) on continuous targets x ∈ [0, 1] (the usual
"Bernoulli" likelihood of image VAEs; it is not zero at a perfect reconstruction — its
minimum is the targets' entropy — but its gradient is, and it gives sharper reconstructions
than a squared error at beta = 1). It is computed from the decoder's logits, so it is safe
under CUDA autocast. In training mode z = mu + exp(logvar / 2) · eps (reparameterisation,
eps ~ N(0, I) from the global RNG); in eval mode z = mu, so the engine's validation loss is
deterministic and draws nothing.

The encoder halves the side four times (stride-2 convolutions, channels width, 2·width,
4·width, 4·width) to S/16 × S/16, then two linear maps give mu and logvar; the decoder mirrors
it with transposed convolutions. No normalisation layers: train and eval modes compute the
same function of z. The model is not a detector (``is_detector = False``): the engine
validates it on ``val_loss``; its registry entry asks for the ``vae_figures`` callback
(reconstructions and samples after each epoch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmkit.errors import FmkitError
from fmkit.models.registry import register_model

#: Sides the VAE accepts: multiples of 16 from 64 to 128 px (four stride-2 halvings).
MIN_SIZE, MAX_SIZE, STRIDE = 64, 128, 16


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2))


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2))


@register_model("vae", callbacks=("vae_figures",))
class ConvVAE(nn.Module):
    """A convolutional VAE of (N, 3, size, size) images in [0, 1]; see the module docstring for the loss.

    Args:
        size: image side in px: a multiple of 16 in [64, 128] (ValueError otherwise).
        latent: dimension of z.
        width: channels of the first encoder convolution (then 2·, 4·, 4·width).
        beta: weight of the KL term (1: the plain VAE).
    """

    is_detector = False

    def __init__(self, size: int = 64, latent: int = 64, width: int = 32, beta: float = 1.0) -> None:
        super().__init__()
        if not MIN_SIZE <= size <= MAX_SIZE or size % STRIDE:
            raise ValueError(f"size must be a multiple of {STRIDE} in [{MIN_SIZE}, {MAX_SIZE}], got {size}")
        if latent < 1 or width < 1:
            raise ValueError(f"latent and width must be >= 1, got latent={latent}, width={width}")
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.size, self.latent, self.width, self.beta = size, latent, width, float(beta)
        chans = (width, 2 * width, 4 * width, 4 * width)
        self.side = size // STRIDE
        flat = chans[-1] * self.side * self.side
        self.encoder = nn.Sequential(
            _down(3, chans[0]), _down(chans[0], chans[1]), _down(chans[1], chans[2]), _down(chans[2], chans[3])
        )
        self.to_mu = nn.Linear(flat, latent)
        self.to_logvar = nn.Linear(flat, latent)
        self.from_z = nn.Linear(latent, flat)
        self.decoder = nn.Sequential(
            nn.LeakyReLU(0.2),
            _up(chans[3], chans[2]),
            _up(chans[2], chans[1]),
            _up(chans[1], chans[0]),
            nn.ConvTranspose2d(chans[0], 3, 4, stride=2, padding=1),
        )

    def _check(self, x: Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, self.size, self.size):
            raise FmkitError(f"ConvVAE expects images (N, 3, {self.size}, {self.size}), got {tuple(x.shape)}")

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior parameters of images x (N, 3, size, size) in [0, 1]: (mu, logvar), each (N, latent)."""
        self._check(x)
        h = self.encoder(x).flatten(1)
        return self.to_mu(h), self.to_logvar(h)

    def decode_logits(self, z: Tensor) -> Tensor:
        """Decoder logits g(z) of latents z (N, latent): (N, 3, size, size); x̂ = sigmoid(g(z))."""
        h = self.from_z(z).view(z.shape[0], -1, self.side, self.side)
        return self.decoder(h)

    def decode(self, z: Tensor) -> Tensor:
        """Images x̂ = sigmoid(g(z)) (N, 3, size, size) in [0, 1] of latents z (N, latent)."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction decode(mu(x)) (N, 3, size, size) in [0, 1] (the posterior mean, no sampling)."""
        return self.decode(self.encode(x)[0])

    def training_step(self, batch: tuple[Tensor, Tensor] | list[Tensor]) -> dict[str, Tensor]:
        """Loss of a batch ``(x, y)`` (y ignored): ``{"loss": recon + beta·kl, "recon": ..., "kl": ...}``.

        Each is a scalar in nats per image, averaged over the batch (see the module docstring);
        z is sampled in training mode and is mu in eval mode.
        """
        x = batch[0]
        mu, logvar = self.encode(x)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if self.training else mu
        logits = self.decode_logits(z)
        recon = F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mu.float().square() + logvar.float().exp() - 1.0 - logvar.float()).sum(1)
        recon, kl = recon.mean(), kl.mean()
        return {"loss": recon + self.beta * kl, "recon": recon, "kl": kl}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` images (n, 3, size, size) in [0, 1] decoded from z ~ N(0, I) (no gradients).

        z is drawn on the CPU (from ``generator`` when given, else the global RNG) and moved to
        the model's device, so a seeded generator gives the same samples on every device.
        """
        z = torch.randn(n, self.latent, generator=generator)
        return self.decode(z.to(self.from_z.weight.device, self.from_z.weight.dtype))
