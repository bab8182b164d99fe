"""Simplified Chinese for the OCR task's words (factory.i18n): its dataset issues. Data only."""

ZH = {
    "PP-OCRv4's recognizer": "PP-OCRv4 的识别模型",
    "No supported OCR layout was found.": "没有找到支持的 OCR 标注格式。",
    "Use ICDAR 2015 (img_N.jpg + gt_img_N.txt), a PaddleOCR Label.txt or recognition list (path TAB text), Ku+ "
    "wzjc-result.json, dddwzsb-result.json or wzsb-result.json, an MMOCR textdet or textrecog JSON, or labels.csv "
    "(filename,words); or pass --format.":
        "请使用 ICDAR 2015（img_N.jpg + gt_img_N.txt）、PaddleOCR 的 Label.txt 或识别列表（路径 TAB 文本）、Ku+ 的 "
        "wzjc-result.json、dddwzsb-result.json 或 wzsb-result.json、MMOCR 的 textdet 或 textrecog JSON，或 labels.csv"
        "（filename,words）；或者用 --format 指定格式。",
    "Text polygons reach outside their image; they were clipped to it (those with half or more outside were dropped).":
        "有的文字多边形超出了图片；已裁剪到图片内（一半或以上在图片外的已丢弃）。",
    "Check the coordinates of these files.": "请检查这些文件的坐标。",
    "Text polygons that cross themselves or have no area were dropped.": "自相交或没有面积的文字多边形已丢弃。",
    "List the corners in order around the text (clockwise from its top-left).": "请按顺序沿文字一周列出各个角点（从左上角开始顺时针）。",
    "Text polygons with fewer than 4 points were dropped.": "少于 4 个点的文字多边形已丢弃。",
    "Give at least 4 corners per text region.": "每个文字区域至少给出 4 个角点。",
    "Text regions or crops without a transcription were dropped (### marks a region to ignore).":
        "没有文字内容的区域或裁剪图已丢弃（### 表示要忽略的区域）。",
    "Type the text, or mark the region ### if it cannot be read.": "请填写文字；如果无法辨认，请把该区域标为 ###。",
    "Some texts use characters that the dictionary given does not hold; they are kept (and added to the model's "
    "dictionary), not dropped.": "有的文字用到了给定字典里没有的字符；它们会被保留（并加入模型的字典），不会被丢弃。",
    "Add these characters to the dictionary file, or leave --dict out.": "请把这些字符加入字典文件，或者不用 --dict。",
    "Texts longer than 64 characters were left out of recognition.": "超过 64 个字符的文字不参与识别训练。",
    "Split long lines into shorter regions.": "请把长的文字行拆成较短的区域。",
    "Crops under 8 px high were left out.": "高度小于 8 像素的裁剪图已被排除。",
    "Crop the words with some margin, from a sharper picture.": "请从更清晰的图片上、留一些边距来裁剪文字。",
    "Images carry an EXIF rotation; their labels are read in the stored pixels, as annotation tools draw them, and "
    "the rotation is ignored.": "有的图片带有 EXIF 旋转信息；标注按存储的像素读取（标注工具就是这样画的），旋转信息被忽略。",
    "If the labels were drawn on the turned picture, save the images turned (without the tag).":
        "如果标注是画在旋转后的图片上的，请把图片按旋转后的样子重新保存（去掉这个标记）。",
    # the task's words
    "ocr": "文字识别",
    "end-to-end Hmean": "端到端 Hmean",
    "OCR validation score": "OCR 验证分数",
    "characters": "个字符",
    "Characters": "字符",
    "text readers (OCR: text lines found and read)": "文字识别模型（OCR：找到并读出文字行）",
    " (text regions with their transcriptions, or word crops with their text)": "（文字区域及其内容，或文字裁剪图及其内容）",
    "I will import the OCR demo data: 300 seeded synthetic 320 x 240 scenes with English words, numbers and Chinese "
    "phrases rendered in Debian fonts on photos, gradients, paper and noise (turned, blurred, JPEG noise), as ICDAR "
    "2015 ground truth, as dataset **signs**.":
        "我将导入 OCR 演示数据：300 张固定种子生成的 320 x 240 合成场景图，用 Debian 字体把英文单词、数字和中文短语画在照片、"
        "渐变、纸张和噪声背景上（有旋转、模糊和 JPEG 噪声），标注为 ICDAR 2015 格式，数据集名为 **signs**。",
    "A text reader (OCR), then. Upload a .zip with your photos and their text regions: ICDAR 2015 (gt_img_N.txt), a "
    "PaddleOCR Label.txt, Ku+ wzjc-result.json or dddwzsb-result.json, or MMOCR JSON; or word crops with their text "
    "(PaddleOCR list, Ku+ wzsb-result.json, labels.csv); say **demo** for synthetic signs; or name an imported OCR "
    "dataset (imported: {imported}).":
        "那就训练文字识别（OCR）模型。请上传一个 .zip，包含照片和文字区域标注：ICDAR 2015（gt_img_N.txt）、PaddleOCR 的 "
        "Label.txt、Ku+ 的 wzjc-result.json 或 dddwzsb-result.json，或 MMOCR JSON；或者文字裁剪图及其内容（PaddleOCR 识别列表、"
        "Ku+ 的 wzsb-result.json、labels.csv）；说 **demo** 使用合成的标牌数据；或者说出已导入的 OCR 数据集名"
        "（已导入：{imported}）。",
    "{texts} texts with {chars} distinct characters ({languages}).": "共 {texts} 段文字，{chars} 个不同字符（{languages}）。",
    "Latin letters and digits": "拉丁字母和数字",
    "Chinese": "中文",
    "Text is about {height:g} px high.": "文字高约 {height:g} 像素。",
    "a DB text detector on {model} with a CTC recognizer: {n} images with {texts} texts train in about {minutes:g} "
    "minutes here.": "基于 {model} 的 DB 文字检测器加 CTC 文字识别器：{n} 张图片、{texts} 段文字在这台机器上大约训练 {minutes:g} 分钟。",
    "Training finished: **{model}** reads {score} on the {split} split.": "训练完成：**{model}** 在{split}集上的成绩：{score}。",
    "Lines read worst: {lines}.": "读得最差的文字行：{lines}。",
}
