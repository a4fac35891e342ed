"""The authors' training loop (``DeepSMOTE_MNIST.py``), reimplemented as a benchmark baseline.

Their model (28x28x1: ``Encoder`` with ``squeeze``, ``Decoder`` from a 7x7 map), their loss (MSE
of the reconstruction plus the MSE of the penalty, weight 1) and their penalty as their loop
computes it each step: one class drawn with ``np.random.choice``, its images selected by a boolean
mask over the whole float64 training array, up to 100 of them drawn without replacement from a
Python list of indices, encoded with the autograd graph built and then left by a round trip
through numpy, the codes and the images shifted by one position, the codes decoded, and each
step's three losses read with ``.item()``. Batches come from a shuffling ``DataLoader`` over a
``TensorDataset``, as theirs. What is timed is that loop; only its data (our images in [-1, 1]
instead of their CSV files) and the seeding (their global generators here are seeded objects)
differ. Not part of the package.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

BATCH = 100


class AuthorsEncoder(nn.Module):
    """Their ``Encoder``: four convs (4, 2, 1) with BatchNorm but on the first, then a linear layer."""

    def __init__(self, width: int = 64, latent_dim: int = 300, channels: int = 1) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, width * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(width * 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width * 2, width * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(width * 4),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width * 4, width * 8, 4, 2, 1, bias=False),
            nn.BatchNorm2d(width * 8),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.fc = nn.Linear(width * 8, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).squeeze())


class AuthorsDecoder(nn.Module):
    """Their ``Decoder``: a linear layer to 8w x 7 x 7, then three transposed convs to 28x28, Tanh."""

    def __init__(self, width: int = 64, latent_dim: int = 300, channels: int = 1) -> None:
        super().__init__()
        self.width = width
        self.fc = nn.Sequential(nn.Linear(latent_dim, width * 8 * 7 * 7), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(width * 8, width * 4, 4),
            nn.BatchNorm2d(width * 4),
            nn.ReLU(True),
            nn.ConvTranspose2d(width * 4, width * 2, 4),
            nn.BatchNorm2d(width * 2),
            nn.ReLU(True),
            nn.ConvTranspose2d(width * 2, channels, 4, stride=2),
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.fc(x).view(-1, self.width * 8, 7, 7))


class AuthorsTraining:
    """Their training loop's state, one epoch per :meth:`epoch` call.

    Parameters
    ----------
    images : np.ndarray
        float32, shape (N, 1, 28, 28), values in [-1, 1].
    labels : np.ndarray
        int, shape (N,).
    width, latent_dim : int
        Their ``dim_h`` and ``n_z`` (64 and 300).
    seed : int
        Seeds the weights, the loader's shuffling and the penalty's draws.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, width: int = 64, latent_dim: int = 300, seed: int = 0):
        torch.manual_seed(seed)
        self.encoder = AuthorsEncoder(width, latent_dim)
        self.decoder = AuthorsDecoder(width, latent_dim)
        self.criterion = nn.MSELoss()
        self.enc_optim = torch.optim.Adam(self.encoder.parameters(), lr=2e-4)
        self.dec_optim = torch.optim.Adam(self.decoder.parameters(), lr=2e-4)
        # Theirs come from np.loadtxt: float64.
        self.dec_x = images.astype(np.float64)
        self.dec_y = labels.astype(np.float64)
        self.n_classes = len(np.unique(labels))
        dataset = TensorDataset(torch.Tensor(self.dec_x), torch.tensor(self.dec_y, dtype=torch.long))
        # Their loop fails on a last batch of one image (BatchNorm at a 1x1 map): such an image is
        # dropped here (`deepsmote train` folds it into the batch before).
        self.loader = DataLoader(
            dataset,
            batch_size=BATCH,
            shuffle=True,
            num_workers=0,
            generator=torch.Generator().manual_seed(seed),
            drop_last=len(dataset) % BATCH == 1,
        )
        self.random = np.random.RandomState(seed)
        # Images the penalty has taken so far: its draws vary the work of an epoch by +-15%.
        self.penalty_images = 0

    def epoch(self) -> float:
        """Train one epoch as their loop does; returns the mean loss per image, as `deepsmote train` logs it.

        (Theirs prints the sum of batch losses times batch sizes over the number of batches.)
        """
        encoder, decoder, criterion = self.encoder, self.decoder, self.criterion
        train_loss = 0.0
        encoder.train()
        decoder.train()
        for images, labs in self.loader:
            encoder.zero_grad()
            decoder.zero_grad()
            labs.detach().cpu().numpy()
            x_hat = decoder(encoder(images))
            mse = criterion(x_hat, images)
            # The penalty, step by step as theirs.
            tc = self.random.choice(self.n_classes, 1)
            xbeg = self.dec_x[self.dec_y == tc]
            nsamp = min(len(xbeg), BATCH)
            self.penalty_images += nsamp
            ind = self.random.choice(list(range(len(xbeg))), nsamp, replace=False)
            xclass = xbeg[ind]
            xcplus = np.append(np.arange(1, len(xclass)), 0)
            xcnew = xclass[[xcplus], :]
            xcnew = torch.Tensor(xcnew.reshape(xcnew.shape[1:]))
            codes = encoder(torch.Tensor(xclass)).detach().cpu().numpy()
            xc_enc = torch.Tensor(np.squeeze(codes[[xcplus], :]))
            mse2 = criterion(decoder(xc_enc), xcnew)
            comb_loss = mse2 + mse
            comb_loss.backward()
            self.enc_optim.step()
            self.dec_optim.step()
            train_loss += comb_loss.item() * images.size(0)
            # Their two other running sums, read the same way.
            mse.item()
            mse2.item()
        return train_loss / len(self.loader.dataset)
