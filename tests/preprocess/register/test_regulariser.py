import numpy as np
import scipy.fft
import scipy.sparse
import scipy.sparse.linalg
import torch

from preprocess.register.regulariser import (
    _dct_last,
    _idct_last,
    dct3,
    diffusive_denominator,
    diffusive_solve,
    gaussian_smooth,
)


def _neumann_laplacian(shape, spacing):
    """Sparse 3-point Laplacian per axis with mirrored (Neumann) boundaries, Kronecker-assembled."""
    terms = []
    for axis, (n, h) in enumerate(zip(shape, spacing, strict=True)):
        main = np.full(n, -2.0)
        main[0] = main[-1] = -1.0
        d = scipy.sparse.diags([np.ones(n - 1), main, np.ones(n - 1)], [-1, 0, 1]) / h**2
        factors = [scipy.sparse.identity(m) for m in shape]
        factors[axis] = d
        term = factors[0]
        for f in factors[1:]:
            term = scipy.sparse.kron(term, f)
        terms.append(term)
    return sum(terms)


def test_dct_diffusive_solve_equals_direct_solve():
    shape, spacing, tau_alpha = (5, 6, 7), (2.0, 2.5, 3.0), 4.0
    rhs = torch.randn(2, 3, *shape, generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    matrix = scipy.sparse.identity(np.prod(shape)) - tau_alpha * _neumann_laplacian(shape, spacing)
    direct = np.stack([scipy.sparse.linalg.spsolve(matrix.tocsc(), r.ravel().double().numpy()).reshape(shape)
                       for r in rhs.reshape(-1, *shape)]).reshape(rhs.shape)
    solved = diffusive_solve(rhs, diffusive_denominator(shape, spacing, tau_alpha, "cpu"))
    np.testing.assert_allclose(solved.numpy(), direct, atol=1e-4)


def test_torch_dct_matches_scipy_for_even_and_odd_lengths():
    for n in (4, 5, 8, 9):
        x = torch.randn(3, n, dtype=torch.float32)
        reference = scipy.fft.dct(x.numpy(), type=2, norm="ortho", axis=-1)
        np.testing.assert_allclose(_dct_last(x).numpy(), reference, atol=1e-5)
        np.testing.assert_allclose(_idct_last(torch.from_numpy(reference)).numpy(), x.numpy(), atol=1e-5)


def test_dct3_round_trip():
    x = torch.randn(2, 4, 5, 6)
    np.testing.assert_allclose(dct3(dct3(x), inverse=True).numpy(), x.numpy(), atol=1e-5)


def test_gaussian_keeps_constant_fields_and_smooths_a_spike():
    field = torch.full((1, 3, 9, 9, 9), 2.5)
    np.testing.assert_allclose(gaussian_smooth(field, 3.0, (2.0, 2.0, 2.0)).numpy(), 2.5, rtol=1e-5)
    spike = torch.zeros(1, 1, 9, 9, 9)
    spike[0, 0, 4, 4, 4] = 1.0
    smoothed = gaussian_smooth(spike, 2.0, (2.0, 2.0, 2.0))
    assert smoothed.max() < 0.2 and abs(float(smoothed.sum()) - 1.0) < 1e-4


def test_solving_in_the_right_hand_side_memory_gives_the_same_field():
    g = torch.Generator().manual_seed(8)
    rhs = torch.randn(2, 3, 9, 10, 11, generator=g)
    denominator = diffusive_denominator((9, 10, 11), (2.0, 2.0, 2.0), 3.0, "cpu")
    kept = diffusive_solve(rhs, denominator)
    assert torch.equal(diffusive_solve(rhs.clone(), denominator, overwrite_rhs=True), kept)
    assert torch.equal(dct3(rhs), dct3(rhs.clone(), overwrite=True))
    assert torch.equal(kept, diffusive_solve(rhs, denominator))  # without overwrite_rhs the input is left as it was
