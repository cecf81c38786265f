// Element-wise kernels and reductions of the cuda backend: bias, ReLU, the skip sum, the MSE loss, Adam, and
// the sums, copies and zeroing a training step needs, so that a step is kernel launches only (a captured step
// replays them: redcore/training.py, CapturedStep).
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

// The loss (paper Eq. 4) and its gradient in one pass: dpred = grad_scale (pred - target), and block b's sum of
// (pred - target)^2 in partial[b] (double).  sum_partials then adds the partial sums in a fixed order, so the
// loss is the same on every run.
extern "C" __global__ void mse_loss(real* __restrict__ dpred, double* __restrict__ partial,
                                    const real* __restrict__ pred, const real* __restrict__ target,
                                    real grad_scale, long long total)
{
    __shared__ double shared[REDUCE_THREADS];
    double sum = 0;
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const real diff = pred[idx] - target[idx];
        dpred[idx] = grad_scale * diff;
        sum += (double)diff * (double)diff;
    }
    sum = block_sum(sum, shared);
    if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

// out[0] = scale * sum of partial[0 .. count), by one block of REDUCE_THREADS threads in a fixed order.
extern "C" __global__ void sum_partials(double* __restrict__ out, const double* __restrict__ partial,
                                        int count, double scale)
{
    __shared__ double shared[REDUCE_THREADS];
    double sum = 0;
    for (int i = threadIdx.x; i < count; i += blockDim.x) sum += partial[i];
    sum = block_sum(sum, shared);
    if (threadIdx.x == 0) out[0] = scale * sum;
}

// y += x, y = x and y = 0 over flat buffers: the skip's gradient sum (Eq. 12), the residual (§3.3), a copy of a
// gradient both summands of a skip receive, and the zeroed gradients of a step.
extern "C" __global__ void add_inplace(real* __restrict__ y, const real* __restrict__ x, long long total)
{
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x)
        y[idx] += x[idx];
}

extern "C" __global__ void copy(real* __restrict__ y, const real* __restrict__ x, long long total)
{
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x)
        y[idx] = x[idx];
}

extern "C" __global__ void zero(real* __restrict__ y, long long total)
{
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x)
        y[idx] = 0;
}

// One Adam step over one flat buffer of all parameters (paper Eq. 5-7).  step_size[0] = alpha_t with the bias
// corrections folded in (redcore/optim.py), read from device memory: the host writes it before a step, so a
// captured step's launch stays the same from step to step.
extern "C" __global__ void adam_update(real* __restrict__ p, const real* __restrict__ g,
                                       real* __restrict__ m, real* __restrict__ v,
                                       const real* __restrict__ step_size, real beta1, real beta2, real eps,
                                       long long total)
{
    const real alpha_t = step_size[0];
    for (long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x; idx < total;
         idx += (long long)gridDim.x * blockDim.x) {
        const real grad = g[idx];
        const real m_t = beta1 * m[idx] + ((real)1 - beta1) * grad;          // Eq. 5
        const real v_t = beta2 * v[idx] + ((real)1 - beta2) * grad * grad;   // Eq. 6
        m[idx] = m_t;
        v[idx] = v_t;
        p[idx] -= alpha_t * m_t / (sqrt(v_t) + eps);                          // Eq. 7
    }
}
