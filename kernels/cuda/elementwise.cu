// Element-wise kernels and reductions of the cuda backend: bias, ReLU, the skip sum, the MSE loss, Adam.
// `real` is float or double (-Dreal=...).  Grid-stride loops: one thread per element, any grid size.
// The two reductions (bias_backward, mse_loss) sum in shared memory with __syncthreads and need
// blockDim.x == REDUCE_THREADS (a power of two).

#define REDUCE_THREADS 256

// y: (N, C, H*W) in place, y[n, c, :] += b[c]; with relu != 0 the ReLU follows in the same pass
// (conv + bias + ReLU of the encoder: one read and one write of y instead of two of each).
extern "C" __global__ void add_bias(real* __restrict__ y, const real* __restrict__ b,
                                    long long plane, int channels, int relu, long long total)
{
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        real value = y[idx] + b[(idx / plane) % channels];
        y[idx] = (relu && value < (real)0) ? (real)0 : value;
    }
}

// y = max(y, 0) in place.
extern "C" __global__ void relu(real* __restrict__ y, long long total)
{
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x)
        if (y[idx] < (real)0) y[idx] = 0;
}

// The skip sum of the paper (Eq. 3): out = max(a + skip, 0).
extern "C" __global__ void add_relu(real* __restrict__ out, const real* __restrict__ a,
                                    const real* __restrict__ skip, long long total)
{
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const real value = a[idx] + skip[idx];
        out[idx] = value > (real)0 ? value : (real)0;
    }
}

// ReLU's backward in place: dy = dy where the forward output y > 0, else 0.
extern "C" __global__ void relu_backward(real* __restrict__ dy, const real* __restrict__ y, long long total)
{
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x)
        if (!(y[idx] > (real)0)) dy[idx] = 0;
}

// Sum of `partial` over the block's REDUCE_THREADS threads, by halving in shared memory; thread 0 gets it.
template <typename T>
__device__ T block_sum(T partial, T* shared)
{
    shared[threadIdx.x] = partial;
    __syncthreads();
    for (int half = REDUCE_THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];
        __syncthreads();
    }
    return shared[0];
}

// db[c] = sum_{n, i} dy[n, c, i], dy: (N, C, plane).  One block per channel c (grid = C).
extern "C" __global__ void bias_backward(real* __restrict__ db, const real* __restrict__ dy,
                                         int n_img, int channels, long long plane)
{
    __shared__ real shared[REDUCE_THREADS];
    const int c = blockIdx.x;
    real partial = 0;
    for (long long t = threadIdx.x; t < (long long)n_img * plane; t += blockDim.x) {
        const long long n = t / plane, i = t % plane;
        partial += dy[(n * channels + c) * plane + i];
    }
    const real sum = block_sum(partial, shared);
    if (threadIdx.x == 0) db[c] = sum;
}

// The loss (paper Eq. 4) and its gradient in one pass: dpred = grad_scale (pred - target), and
// loss_sum += sum (pred - target)^2 (one double atomicAdd per block; the caller zeroes loss_sum and
// multiplies by the reduction's 1/N or 1/M).
extern "C" __global__ void mse_loss(real* __restrict__ dpred, double* __restrict__ loss_sum,
                                    const real* __restrict__ pred, const real* __restrict__ target,
                                    real grad_scale, long long total)
{
    __shared__ double shared[REDUCE_THREADS];
    double partial = 0;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const real diff = pred[idx] - target[idx];
        dpred[idx] = grad_scale * diff;
        partial += (double)diff * (double)diff;
    }
    const double sum = block_sum(partial, shared);
    if (threadIdx.x == 0) atomicAdd(loss_sum, sum);
}

// One Adam step over one flat buffer of all parameters (paper Eq. 5-7), step_size = alpha_t with the bias
// corrections folded in (redcore/optim.py).
extern "C" __global__ void adam_update(real* __restrict__ p, const real* __restrict__ g,
                                       real* __restrict__ m, real* __restrict__ v,
                                       real step_size, real beta1, real beta2, real eps, long long total)
{
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const real grad = g[idx];
        const real m_t = beta1 * m[idx] + ((real)1 - beta1) * grad;          // Eq. 5
        const real v_t = beta2 * v[idx] + ((real)1 - beta2) * grad * grad;   // Eq. 6
        m[idx] = m_t;
        v[idx] = v_t;
        p[idx] -= step_size * m_t / (sqrt(v_t) + eps);                        // Eq. 7
    }
}
