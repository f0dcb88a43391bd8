"""The evaluation protocol: MATLAB bicubic (`resize`), PSNR/SSIM (`metrics`), benchmark folders (`samples`), the
scorer and its report table (`scoring`), LPIPS/FID/IS (`perceptual`, with the weight files' lookup and download in
`perceptual_weights`).

Below train/, export/ and bench/, which all score through it without importing one another. Nothing is imported
here: `metrics` loads without PyTorch, the others need it.
"""
