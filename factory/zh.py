"""Simplified Chinese for the factory's own words (factory.i18n): the shared dataset-issue catalogue, severities,
splits, run states, and the training defaults' reasons. Data only; the task packages hold their own."""

ZH = {
    # severities, splits, run states
    "error": "错误", "warning": "警告", "note": "提示",
    "train": "训练集", "val": "验证集", "test": "测试集",
    "running": "运行中", "completed": "已完成", "failed": "失败", "stopped": "已停止", "interrupted": "已中断",
    "queued": "排队中",
    # the shared dataset-issue catalogue (factory.datasets.issues.CATALOGUE): what is wrong, how to fix it
    "The path does not exist.": "路径不存在。",
    "Check the path; give a folder or a .zip file.": "请检查路径：给出一个文件夹或一个 .zip 文件。",
    "The file is not a folder or a .zip archive.": "这个文件不是文件夹，也不是 .zip 压缩包。",
    "Give a folder of images or a .zip of one (tar, rar and 7z are not read).":
        "请给出一个图片文件夹或它的 .zip 压缩包（不读取 tar、rar 和 7z）。",
    "The .zip archive is damaged and cannot be read.": ".zip 压缩包已损坏，无法读取。",
    "Re-create the archive (for example `zip -r data.zip folder/`) and import it again.":
        "请重新打包（例如 `zip -r data.zip folder/`）后再导入。",
    "The archive is over 2 GB (or unpacks to more than 20 GB).": "压缩包超过 2 GB（或解压后超过 20 GB）。",
    "Split the data into several archives or import the unpacked folder.": "请把数据拆成几个压缩包，或直接导入解压后的文件夹。",
    "The archive holds more than 50,000 files.": "压缩包里的文件超过 50,000 个。",
    "Split it into archives of at most 50,000 files, or import the unpacked folder.":
        "请拆成每个最多 50,000 个文件的压缩包，或直接导入解压后的文件夹。",
    "The archive or label file has paths that point outside the dataset (absolute or '..' paths).":
        "压缩包或标注文件里有指向数据集之外的路径（绝对路径或含 '..' 的路径）。",
    "Use paths relative to the dataset folder, without '..'.": "请使用相对于数据集文件夹的路径，不要含 '..'。",
    "The label file cannot be read.": "标注文件无法读取。",
    "Fix the file at the position given; the expected shape is in the README.": "请按给出的位置修改文件；应有的格式见 README。",
    "No usable labelled images were found.": "没有找到可用的带标注图片。",
    "Add images (png, jpg, jpeg, bmp, gif, tiff, webp) in one folder per class.":
        "请按“每个类别一个文件夹”放入图片（png、jpg、jpeg、bmp、gif、tiff、webp）。",
    "Files with an unsupported extension were skipped.": "扩展名不受支持的文件已跳过。",
    "Convert them to png or jpg if they are images; otherwise remove them.": "如果它们是图片，请转成 png 或 jpg；否则请删除。",
    "Corrupt or truncated images were left out.": "损坏或不完整的图片已被排除。",
    "Re-export or re-download these files, then import again.": "请重新导出或重新下载这些文件，然后再导入。",
    "Images under 30 px on a side were left out.": "边长小于 30 像素的图片已被排除。",
    "Use images at least 30x30 pixels.": "请使用至少 30x30 像素的图片。",
    "Images with an implausible pixel count (over 89 million) were left out as possible decompression bombs.":
        "像素数不合常理（超过 8900 万）的图片可能是“解压炸弹”，已被排除。",
    "Downscale these images before importing.": "请先缩小这些图片再导入。",
    "Images with identical content were found; only the first copy is kept.": "发现内容完全相同的图片，只保留第一份。",
    "Remove the duplicates (a copy in two splits or two classes inflates accuracy).":
        "请删除重复的图片（同一张图出现在两个划分或两个类别里会虚高准确率）。",
    "The label file names images that are not in the data.": "标注文件里提到的图片不在数据中。",
    "Add the files or remove their entries from the label file.": "请补上这些文件，或从标注文件里删掉对应条目。",
    "Images that are not RGB (RGBA, grayscale, palette, CMYK) are converted to RGB when loaded.":
        "非 RGB 图片（RGBA、灰度、调色板、CMYK）在读取时会转换为 RGB。",
    "Nothing to do, unless the colour mode carries meaning.": "无需处理，除非颜色模式本身有意义。",
    "Nothing to do.": "无需处理。",
    "{arch} is the default {task} architecture.": "{arch} 是{task}的默认架构。",
    "Training finished: **{model}** reaches {score} on the {split} split.": "训练完成：**{model}** 在{split}上达到 {score}。",
    # the training defaults' reasons (factory.training.defaults)
    "continuing from an earlier version (--from)": "从之前的版本继续训练（--from）",
    "no ImageNet weights for this architecture on this machine: from scratch": "本机没有这个架构的 ImageNet 权重：从头训练",
    "{n} training images are enough to train from scratch": "{n} 张训练图片足够从头训练",
    "ImageNet weights are on this machine and {n} training images is little data":
        "本机有 ImageNet 权重，而 {n} 张训练图片数据量较少",
    "median image side {side:g} px, upscaled to {size} px, the smallest this architecture trains well at":
        "图片边长中位数 {side:g} 像素，放大到 {size} 像素（这个架构能训练好的最小尺寸）",
    "median image side {side:g} px; the architecture's default {size} px": "图片边长中位数 {side:g} 像素；使用架构默认的 {size} 像素",
    "median image side {side:g} px: not upscaled to the architecture's {size} px (it would cost time, here and on "
    "the device, and add no detail)":
        "图片边长中位数 {side:g} 像素：不放大到架构默认的 {size} 像素（放大会在这里和设备上都多花时间，却不增加细节）",
    "one class only: flips assumed harmless": "只有一个类别：认为翻转无害",
    "orientation matters: class means change under a flip by {change:.2f} of their spread (digits, text, arrows); "
    "--hflip 0.5 turns flips on":
        "方向很重要：翻转后各类别的均值变化达其离散度的 {change:.2f}（如数字、文字、箭头）；--hflip 0.5 可打开翻转",
    "flips look harmless: class means change under a flip by only {change:.2f} of their spread":
        "翻转看起来无害：翻转后各类别的均值只变化其离散度的 {change:.2f}",
}
