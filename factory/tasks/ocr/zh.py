"""Simplified Chinese for the OCR task's words (factory.i18n): its dataset issues. Data only."""

ZH = {
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
}
