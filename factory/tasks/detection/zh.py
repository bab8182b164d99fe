"""Simplified Chinese for the detection task's words (factory.i18n): the chat's sentences and its dataset issues.
Data only."""

ZH = {
    "detection": "目标检测", "boxes": "个框", "small": "小", "medium": "中", "large": "大",
    " (boxes for object detection)": "（用于目标检测的框）",
    "object detectors (boxes)": "目标检测模型（框）",
    "I will import the detection demo data: 300 seeded synthetic 320 px scenes with circles, squares and triangles "
    "in Pascal VOC XML, as dataset **scenes**.":
        "我将导入检测演示数据：300 张带固定随机种子合成的 320 像素场景，含圆形、方形和三角形，Pascal VOC XML 格式，"
        "数据集名为 **scenes**。",
    "An object detector, then. Upload a .zip with your images and their boxes: Pascal VOC XML, COCO JSON, YOLO (with "
    "data.yaml), a Ku+ txkt-result.json, a ModelArts manifest or a CSV of coordinates; say **demo** for synthetic "
    "scenes; or name an imported detection dataset (imported: {imported}).":
        "那就做目标检测。请上传一个包含图片及其标注框的 .zip：Pascal VOC XML、COCO JSON、YOLO（带 data.yaml）、Ku+ 的 "
        "txkt-result.json、ModelArts manifest 或坐标 CSV；说 **演示** 使用合成场景；或者说出一个已导入的检测数据集"
        "（已导入：{imported}）。",
    "{boxes} boxes ({per:g} per image typically; {negatives} images without any, kept as negatives). By size: {sizes} "
    "(small is under 32x32 px).":
        "共 {boxes} 个框（通常每张图 {per:g} 个；{negatives} 张图没有框，作为负样本保留）。按大小：{sizes}（小指 32x32 "
        "像素以下）。",
    "an anchor-free FCOS detector on {model}: the images are about {side} px and ":
        "基于 {model} 的无锚框 FCOS 检测器：图片约 {side} 像素，",
    "{share:.0%} of the boxes are small (under 32x32 px), so ": "{share:.0%} 的框是小目标（32x32 像素以下），所以",
    "the letterbox size keeps them visible; ": "letterbox 尺寸能让它们保持可见；",
    "the slowest device ({device}) has about {gflops:g} GFLOPS; ": "最慢的设备（{device}）约有 {gflops:g} GFLOPS；",
    "{n} images with {boxes} boxes train in about {minutes:g} minutes here.":
        "{n} 张图片、{boxes} 个框在本机大约训练 {minutes:g} 分钟。",
    "Training finished: **{model}** reaches **mAP@0.5 {map50:.2%}** on the test split (COCO mAP@0.5:0.95 {map:.2%}, "
    "{boxes} boxes kept over {images} images).":
        "训练完成：**{model}** 在测试集上达到 **mAP@0.5 {map50:.2%}**（COCO mAP@0.5:0.95 {map:.2%}，{images} 张图上"
        "保留 {boxes} 个框）。",
    "Objects found (recall at IoU 0.5) by size: {sizes}.": "按大小统计的找出比例（IoU 0.5 下的召回率）：{sizes}。",
    "Hardest classes: {classes}.": "最难的类别：{classes}。",
    # its dataset issues (factory.tasks.detection.formats)
    "No supported detection layout was found.": "没有找到支持的检测数据结构。",
    "Use Pascal VOC XML beside the images (or in Annotations/), a COCO JSON, a YOLO data.yaml with images/ and "
    "labels/, a Ku+ txkt-result.json, a ModelArts .manifest, or a CSV with FILE_NAME, LABEL_VALUE, LABEL_COORDINATE; "
    "or pass --format.":
        "请使用与图片并列（或在 Annotations/ 中）的 Pascal VOC XML、COCO JSON、带 images/ 和 labels/ 的 YOLO data.yaml、"
        "Ku+ 的 txkt-result.json、ModelArts .manifest，或含 FILE_NAME、LABEL_VALUE、LABEL_COORDINATE 列的 CSV；或者用 "
        "--format 指定格式。",
    "Annotation files that cannot be parsed were skipped (file and line given).": "无法解析的标注文件已跳过（给出了文件和行号）。",
    "Fix the syntax at the position given, or remove the file.": "请修正给出位置的语法，或删除该文件。",
    "Annotations name images that are not in the data; they were skipped.": "有标注提到的图片不在数据中，已跳过。",
    "Add the images, or remove their annotations.": "请补上这些图片，或删除它们的标注。",
    "Images without an annotation file were left out (not treated as empty).": "没有标注文件的图片已被排除（不当作空图）。",
    "Add an annotation for each (an empty one marks an image with no objects).": "请为每张图加标注（空标注表示图中没有目标）。",
    "Boxes with a class that the label list does not define were dropped.": "类别不在标签列表里的框已丢弃。",
    "Add the class to the category list (COCO categories, YOLO names) or fix the class id.":
        "请把该类别加到类别列表（COCO categories、YOLO names），或修正类别编号。",
    "Boxes under 2 px wide or high, or with min > max, were dropped.": "宽或高小于 2 像素、或最小值大于最大值的框已丢弃。",
    "Fix the coordinates; a box needs a width and a height of at least 2 px.": "请修正坐标；框的宽和高至少要 2 像素。",
    "Boxes partly outside the image (less than half their area) were clipped to it.": "部分超出图片（不到一半面积）的框已裁剪到图片内。",
    "Nothing to do if the clipped boxes look right; otherwise fix their coordinates.": "如果裁剪后的框看起来正确就无需处理；否则请修正坐标。",
    "Boxes with half or more of their area outside the image were dropped.": "一半或以上面积在图片外的框已丢弃。",
    "Fix the coordinates (are they relative where pixels are expected, or the other way round?).":
        "请修正坐标（是不是把相对坐标当成了像素坐标，或者反过来？）。",
    "Images annotated with no objects are kept as negatives (they teach the model what is not an object).":
        "标注为没有目标的图片作为负样本保留（它们教模型什么不是目标）。",
}
