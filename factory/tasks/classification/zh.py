"""Simplified Chinese for the classification task's words (factory.i18n): the chat's sentences and its dataset
issues. Data only."""

ZH = {
    "classification": "图像分类", "accuracy": "准确率", "images": "张图片", "classes": "个类别",
    " (a label per image)": "（每张图片一个标签）",
    "image classifiers (one label per image)": "图像分类模型（每张图片一个标签）",
    "I will import the demo data: scikit-learn's 1797 handwritten digits (10 classes, 8x8 grey images) as dataset "
    "**digits**.": "我将导入演示数据：scikit-learn 的 1797 张手写数字（10 个类别，8x8 灰度图），数据集名为 **digits**。",
    "the slowest device ({device}) has about {gflops:g} GFLOPS, so ": "最慢的设备（{device}）约有 {gflops:g} GFLOPS，所以 ",
    "{model} fits the latency budget": "{model} 能满足延迟预算",
    "{model} fits": "{model} 合适",
    "; {n} images train in about {minutes:g} minutes here.": "；{n} 张图片在本机大约训练 {minutes:g} 分钟。",
    "Training finished: **{model}** reaches **{accuracy:.2%}** accuracy on the test split (macro F1 {f1:.3f}).":
        "训练完成：**{model}** 在测试集上的准确率为 **{accuracy:.2%}**（宏平均 F1 {f1:.3f}）。",
    "Hardest classes: {classes}.": "最难的类别：{classes}。",
    "{label} ({recall:.0%} found)": "{label}（找出 {recall:.0%}）",
    "The confusion matrix and the worst-classified images are below.": "混淆矩阵和分错最严重的图片见下方。",
    # its dataset issues (factory.tasks.classification.formats)
    "No supported dataset layout was found.": "没有找到支持的数据集结构。",
    "Use one folder per class, a train/val/test split of such folders, a Ku+ txfl-result.json, or a CSV with columns "
    "path,label; or pass --format.":
        "请使用“每个类别一个文件夹”、按 train/val/test 划分的这种文件夹、Ku+ 的 txfl-result.json，或含 path,label "
        "两列的 CSV；或者用 --format 指定格式。",
    "A classification dataset needs at least 2 classes.": "分类数据集至少需要 2 个类别。",
    "Add a folder (or label) for each class you want the model to tell apart.": "请为每个想让模型区分的类别加一个文件夹（或标签）。",
    "The same image content appears under different labels; all copies were left out.":
        "同样内容的图片出现在不同标签下；所有副本都已排除。",
    "Decide the right class for each file and keep one copy.": "请为每个文件确定正确的类别，只保留一份。",
    "Classes with fewer than 20 images.": "有的类别图片少于 20 张。",
    "Add images to these classes (20+ per class, balanced, is the usual minimum).":
        "请给这些类别补充图片（通常每类至少 20 张，且各类数量均衡）。",
    "Label names that are not valid identifiers (ASCII letters, digits, '_', not starting with a digit).":
        "有的标签名不是合法标识符（应由 ASCII 字母、数字、'_' 组成，且不以数字开头）。",
    "Rename the folders or labels; some runtimes and platforms reject other names.":
        "请重命名文件夹或标签；有些运行时和平台不接受其他名字。",
    "Images at the top level of a folder-per-class layout are kept as unlabelled and not used for training.":
        "“每类一个文件夹”结构中放在最上层的图片视为未标注，不用于训练。",
    "Move them into a class folder to use them.": "把它们移到某个类别文件夹里才能使用。",
}
