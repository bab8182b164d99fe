"""Simplified Chinese for the retrieval task's words (factory.i18n): the chat's sentences and its dataset issues.
Data only."""

ZH = {
    "retrieval": "图像检索", "identities": "个身份（商品、零件或人）",
    "image retrieval (an embedder and a gallery you can grow without retraining)":
        "图像检索（一个特征提取模型，加一个无需重新训练就能扩充的图库）",
    " (a folder of photos per identity: product, part or person)": "（每个身份一个照片文件夹：商品、零件或人）",
    "I will import the retrieval demo data: 40 seeded synthetic products x 8 photos each (96 px; pasted on photos, "
    "gradients and noise, turned, blurred) as dataset **products**.":
        "我将导入检索演示数据：40 个固定随机种子合成的商品，每个 8 张照片（96 像素；贴在照片、渐变和噪声背景上，"
        "有旋转和模糊），数据集名为 **products**。",
    "Image retrieval, then: the model learns what makes a product, part or person look like itself, and a gallery you "
    "can grow later finds the nearest ones. Upload a .zip with one folder of photos per identity (several photos "
    "each: other angles, light, backgrounds), a PP-ShiTu path<TAB>label list or TAO's train/ reference/ query/ "
    "folders; say **demo** for synthetic products; or name an imported dataset (imported: {imported}).":
        "那就做图像检索：模型学习一个商品、零件或人“长得像自己”的特征，之后可以不断扩充的图库会找出最相近的。请上传一个 "
        ".zip，每个身份一个照片文件夹（每个多张：不同角度、光线、背景），或 PP-ShiTu 的 path<TAB>label 列表，或 TAO 的 "
        "train/ reference/ query/ 文件夹；说 **演示** 使用合成商品；或者说出一个已导入的数据集（已导入：{imported}）。",
    "Each identity has {low:g} to {high:g} photos (median {median:g}); validation and test hold identities the model "
    "never trains on.": "每个身份有 {low:g} 到 {high:g} 张照片（中位数 {median:g}）；验证集和测试集里的身份模型训练时从未见过。",
    "Training finished: on {queries} photos of identities it never saw, **{model}** finds the same identity first "
    "**{r1:.0%}** of the time (Recall@1; within the top 5: {r5:.0%}).":
        "训练完成：在 {queries} 张从未见过的身份的照片上，**{model}** 把同一身份排在第一位的比例是 **{r1:.0%}**"
        "（Recall@1；前 5 名以内：{r5:.0%}）。",
    # its dataset issues (factory.tasks.retrieval.formats)
    "Identities with a single image: they are kept for the gallery (the test split) but cannot teach the model what "
    "stays the same across views.": "有的身份只有一张图片：它们留在图库（测试集）里，但无法教会模型不同视角下什么保持不变。",
    "Add a second photo of each (another angle, light or background) to train on them.":
        "请为每个身份再加一张照片（换个角度、光线或背景）才能用于训练。",
    "The same image content appears under different identities; all copies were left out.":
        "同样内容的图片出现在不同身份下；所有副本都已排除。",
    "Decide which identity each file shows and keep one copy.": "请确定每个文件属于哪个身份，只保留一份。",
    "A retrieval dataset needs at least 4 identities with two or more images each (some to train on, some held back "
    "to measure unseen identities).": "检索数据集至少需要 4 个身份，每个至少两张图（一部分用于训练，一部分留作衡量未见过的身份）。",
    "Add identities: one folder of photos per product, part or person.": "请增加身份：每个商品、零件或人一个照片文件夹。",
    "Identities appear both in the training split and in the held-out splits the data brought: Recall@K then also "
    "measures identities the model was trained on.":
        "数据自带的划分里，有的身份同时出现在训练集和留出集：这样 Recall@K 也会衡量到模型训练过的身份。",
    "Keep every identity in one split (the split is by identity for retrieval).": "请让每个身份只在一个划分里（检索按身份划分）。",
}
