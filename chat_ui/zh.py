"""Simplified Chinese for the chat, the app's tabs and the guide's words (factory.i18n). Data only: the English
text is the key, and its `{placeholders}` must appear in the translation."""

ZH = {
    # -- words ---------------------------------------------------------------------------------------------
    "{first} and {last}": "{first}和{last}", ", ": "、",
    "That did not work: {message}\n\n**How to fix it:** {fix}": "这一步没有成功：{message}\n\n**怎么解决：** {fix}",
    "Fix: {fix}": "解决办法：{fix}",
    "The data has a problem.": "数据有问题。", "A setting is not valid.": "有一个设置不合法。",
    "Something named here does not exist.": "提到的东西不存在。", "That is not supported.": "暂不支持这样做。",
    "A package this step needs is not installed.": "这一步需要的软件包没有安装。", "Training failed.": "训练失败。",
    "The export failed.": "导出失败。", "The exported model does not match the trained one.": "导出的模型与训练好的模型不一致。",
    "The accuracy budget cannot be met.": "无法满足精度预算。", "That did not work.": "这一步没有成功。",
    "Dataset **{ref}** ({format}): {images} images in {classes} {class_word}; split {splits}.":
        "数据集 **{ref}**（{format}）：{images} 张图片，{classes} {class_word}；划分为 {splits}。",
    "Dataset **{ref}** ({format}): {images} images; split {splits}.": "数据集 **{ref}**（{format}）：{images} 张图片；划分为 {splits}。",
    "balanced": "均衡", "unbalanced: {hi} vs {lo} {unit} between the largest and smallest class":
        "不均衡：最大的类有 {hi} {unit}，最小的只有 {lo} {unit}",
    "({n} files)": "（{n} 个文件）", "; ": "；", "{heading} ({balance}): {counts}": "{heading}（{balance}）：{counts}",
    "- {severity}: {message}": "- {severity}：{message}", "Classes": "各类别", "Identities": "各身份", "No problems found.": "没有发现问题。",
    "as you asked": "按你的要求", "no mirrored copies": "不加镜像副本", "mirrored copies": "加镜像副本",
    "ImageNet weights": "ImageNet 预训练权重", "scratch": "零",
    "Input {size} px ({size_why}); training starts from {start} ({start_why}) with {flips} ({flips_why}).":
        "输入 {size} 像素（{size_why}）；训练从{start}开始（{start_why}），{flips}（{flips_why}）。",
    "Training is {status}: starting up (loading the images).": "训练{status}：正在启动（读取图片）。",
    "epoch {epoch} of at most {epochs}": "第 {epoch} 轮（最多 {epochs} 轮）", "epoch {epoch}": "第 {epoch} 轮",
    "validation {metric} {value:.1%} after epoch {epoch}": "第 {epoch} 轮后验证集{metric} {value:.1%}",
    "loss {loss:.3f}": "损失 {loss:.3f}", "about {minutes:.1f} min left": "大约还剩 {minutes:.1f} 分钟",
    "Training is running: {parts}. Say *stop* to end it early.": "正在训练：{parts}。说 *停止* 可以提前结束。",
    "| target | precision | {metric} | change | size MB | latency here |": "| 目标 | 精度 | {metric} | 变化 | 大小 MB | 本机延迟 |",
    "runs on its device": "在目标设备上运行", "{points:+.2f} pts": "{points:+.2f} 个点",
    "Last, the gallery it searches: upload a .zip of the photos to recognise (one folder per product, part or person), "
    "or say **use the dataset** to index the photos of **{dataset}**.":
        "最后是它要检索的图库：上传一个要识别的照片 .zip（每个商品、零件或人一个文件夹），或者说 **用这个数据集**，"
        "把 **{dataset}** 的照片建成索引。",
    # -- the guide -----------------------------------------------------------------------------------------
    "Something went wrong on my side ({error}). Please try again, or say *start over*.":
        "我这边出了问题（{error}）。请再试一次，或者说 *重新开始*。",
    "Starting over.": "重新开始。", "OK, I will answer in English.": "好的，接下来我用中文回答。",
    "OCR": "文字识别（OCR）", "Retrieval": "图像检索", "Segmentation": "图像分割",
    "{task} is not supported yet: today I train {tasks}. Shall we build one of those?":
        "暂时还不支持{task}：目前我能训练{tasks}。要做其中一种吗？",
    "Shall I go ahead? (yes / no)": "要我开始吗？（好的 / 不要）",
    "Everything is done: the model is deployed. Ask me anything, say *start over* for a new model, or *go back* to "
    "change the targets.": "全部完成：模型已经部署。有问题随时问我；说 *重新开始* 做一个新模型，或说 *返回上一步* 修改目标设备。",
    "none yet": "还没有",
    "First, the data. Upload a .zip of images (one folder per class for a classifier; VOC, COCO or YOLO boxes for a "
    "detector), say **demo** for handwritten digits, or name an imported dataset (imported: {names}).":
        "首先是数据。上传一个图片 .zip（分类：每个类别一个文件夹；检测：VOC、COCO 或 YOLO 格式的框），说 **演示** "
        "使用手写数字，或者说出一个已导入的数据集（已导入：{names}）。",
    "Please upload one .zip file holding your images (for example one folder per class). I got {count} file(s): "
    "{names}.": "请上传一个装着图片的 .zip 文件（例如每个类别一个文件夹）。我收到了 {count} 个文件：{names}。",
    "I will check **{file}** and import it as dataset **{name}**{kind}.": "我将检查 **{file}**，并把它导入为数据集 **{name}**{kind}。",
    "Where will the model run? For example *a Raspberry Pi 4 under 30 ms*, *Android phones*, *an Intel NUC*, "
    "*a Jetson*; and how much {metric} may compression cost (*at most 1 point worse*)?":
        "模型要在哪里运行？例如 *树莓派4，延迟小于30毫秒*、*安卓手机*、*英特尔 NUC*、*Jetson*；压缩最多可以损失多少"
        "{metric}（*精度下降不超过1个点*）？",
    "I did not recognise a device in *{text}*. I know: {known}. Which one is closest? (You can add your own device "
    "profile to devices.yaml in the workspace.)":
        "我没有从 *{text}* 里认出设备。我知道这些：{known}。哪一个最接近？（也可以在工作区的 devices.yaml 里添加你自己的设备配置。）",
    "A budget of {points:g} points would let compression ruin the model. Please give at most 20 points (1 is typical).":
        "{points:g} 个点的预算会让压缩毁掉模型。请给出不超过 20 个点的预算（通常是 1 个点）。",
    "You asked for {model}.": "你指定了 {model}。", "You asked for {size} px.": "你指定了 {size} 像素。",
    "Say *flips on* or *flips off* if mirrored pictures are (or are not) still valid examples.":
        "如果镜像后的图片仍是（或不再是）有效样本，请说 *打开镜像* 或 *不要镜像*。",
    "{metric} at most {points:g} point(s) below FP32": "{metric}最多比 FP32 低 {points:g} 个点",
    "under {ms:g} ms per image": "每张图小于 {ms:g} 毫秒", "under {mb:g} MB": "小于 {mb:g} MB",
    "{minutes:g} minutes": "{minutes:g} 分钟", "{epochs} epochs": "{epochs} 轮",
    "For **{devices}** ({budget}) I propose **{model}** at **{size} px**, trained for {limit}.\n\n*Why:* {why}"
    "\n\nTargets after training: {targets}.":
        "针对 **{devices}**（{budget}），我建议用 **{model}**，输入 **{size} 像素**，训练 {limit}。\n\n*理由：* {why}"
        "\n\n训练后的导出目标：{targets}。",
    "Fine, nothing was changed. Tell me what to do differently, or say *go back*.": "好的，什么都没有改动。告诉我要怎么调整，或者说 *返回上一步*。",
    "Done:": "完成：",
    "Training started (run `{run}`). It runs in the background: ask *how is it going?* any time, or say *stop*. The "
    "Training tab shows the curves.": "训练已开始（运行 `{run}`），在后台进行：随时问 *进度怎么样了*，或者说 *停止*。训练页显示曲线。",
    "Training {status}": "训练{status}",
    ". Say *yes* to train again with the same recipe, or change it.": "。说 *好的* 按同样的方案再训练一次，或者修改方案。",
    "Training ended.": "训练已结束。", "Nothing is running right now.": "现在没有正在运行的任务。", "Train again.": "再训练一次。",
    "Stopping after the current step. The last checkpoint is kept; say *how is it going?* to see it end.":
        "将在当前这一步之后停止，保留最后的检查点；问 *进度怎么样了* 可以看到它结束。",
    "Nothing is running, so there is nothing to stop.": "没有正在运行的任务，所以没有什么可停止的。",
    "Next I will compress and export it for {targets} (INT8 where it keeps within {points:g} point(s), else FP32), "
    "then measure everything in a benchmark report.":
        "接下来我会为 {targets} 压缩并导出它（精度损失在 {points:g} 个点以内就用 INT8，否则用 FP32），然后在基准测试报告里测量全部结果。",
    "Exporting to {targets} and measuring: this takes a minute or two. I will post the results here; ask *how is it "
    "going?* meanwhile.": "正在导出到 {targets} 并测量：需要一两分钟。结果会发在这里；期间可以问 *进度怎么样了*。",
    "exported {target} {precision}": "已导出 {target} {precision}", "{target} {precision} refused": "{target} {precision} 未通过",
    "measuring everything for the benchmark report": "正在为基准测试报告测量全部结果",
    "{target} {precision} not shipped: {why}": "{target} {precision} 没有交付：{why}",
    "Shall I deploy it here (endpoint + API key) and make the QR code for your phone?":
        "要我在这里部署它（接口地址 + API 密钥），并生成手机扫码用的二维码吗？",
    "Exports done:": "导出完成：", "In plain words:": "简单说明：",
    "**Benchmark report:** [{url}]({url}) ({rows} measured rows, estimates for the device profiles)":
        "**基准测试报告：** [{url}]({url})（{rows} 行实测数据，其余设备为估算）",
    "**Benchmark report:** [{url}]({url})": "**基准测试报告：** [{url}]({url})",
    "Deployed **{name}:v{version}** ({target} {precision}).\n\nEndpoint: `{endpoint}` (PAI-EAS route: `{pai}`)\n\n"
    "API key (shown once, keep it): `{key}`":
        "已部署 **{name}:v{version}**（{target} {precision}）。\n\n接口地址：`{endpoint}`（PAI-EAS 路由：`{pai}`）\n\n"
        "API 密钥（只显示这一次，请保存好）：`{key}`",
    "Scan the QR code to run the model on your phone: {url}": "用手机扫描二维码，在手机上运行模型：{url}",
    "Note: {warning}": "注意：{warning}",
    "I will embed the photos of **{source}** with **{model}** and index them as gallery **{name}**.":
        "我将用 **{model}** 提取 **{source}** 中照片的特征，并建成图库 **{name}**。",
    "Please upload one .zip of photos (one folder per identity).": "请上传一个照片 .zip（每个身份一个文件夹）。",
    "I will add the photos of **{source}** to gallery **{index}** (its next version; the model is not retrained).":
        "我将把 **{source}** 中的照片加入图库 **{index}**（作为它的下一个版本；模型不需要重新训练）。",
    "exact search": "精确搜索",
    "Gallery **{index}:v{version}**: {items} photos, {kind} index ({params}; Recall@10 against exact search "
    "{recall:.3f}).": "图库 **{index}:v{version}**：{items} 张照片，{kind} 索引（{params}；相对精确搜索的 Recall@10 为 {recall:.3f}）。",
    "Upload more photos any time to grow it.": "随时可以上传更多照片来扩充它。",
    "Search it with a photo (API key for this gallery, shown once: `{key}`):": "用一张照片来检索（这个图库的 API 密钥，只显示这一次：`{key}`）：",
    "To add new products, parts or people, upload a .zip of their photos (one folder each): the model is not "
    "retrained.": "要加入新的商品、零件或人，上传它们照片的 .zip（每个一个文件夹）：模型不需要重新训练。",
    "There is no **{model}** in this workspace. The Models & Reports tab lists them.":
        "这个工作区里没有 **{model}**。“模型与报告”页列出了所有模型。",
    "I will deploy **{model}** here (endpoint + API key) and make the QR code for your phone.":
        "我将在这里部署 **{model}**（接口地址 + API 密钥），并生成手机扫码用的二维码。",
    "I will continue training **{model}** on **{dataset}** from its weights for {minutes:g} more minutes; the result is "
    "its next version.": "我将在 **{dataset}** 上从 **{model}** 的权重继续训练 {minutes:g} 分钟；结果是它的下一个版本。",
    "**{model}**: test {metric} {score:.2%}.": "**{model}**：测试集{metric} {score:.2%}。",
    "It has no benchmark report yet: I will measure every artifact here and estimate the device profiles.":
        "它还没有基准测试报告：我会在本机实测每个导出文件，并估算各设备的表现。",
    "Training is running; say *stop* first if you want to change the recipe.": "训练正在进行；如果想修改方案，请先说 *停止*。",
    "We are at the first step.": "我们已经在第一步了。", "Back to **{step}**.": "回到 **{step}**。",
    "data": "数据", "target": "目标设备", "recipe": "训练方案", "training": "训练", "export": "导出",
    "exporting": "导出中", "deploy": "部署", "gallery": "图库", "done": "完成",
    "Upload a .zip, say *demo*, or name a dataset.": "上传一个 .zip、说 *演示*，或者说出一个数据集。",
    "Tell me where the model will run and the accuracy budget.": "告诉我模型在哪里运行，以及精度预算。",
    "Tell me the devices and budget again, or say *yes* to the proposal.": "再告诉我一次设备和预算，或者说 *好的* 接受建议。",
    "Say *yes* to export, or *go back*.": "说 *好的* 开始导出，或者说 *返回上一步*。", "Say *yes* to deploy.": "说 *好的* 开始部署。",
    "Upload the gallery photos (.zip, one folder per identity) or say *use the dataset*.":
        "上传图库照片（.zip，每个身份一个文件夹），或者说 *用这个数据集*。",
    "The model is deployed.": "模型已经部署。",
    "I could not find that in my docs.": "我的文档里没有找到这个。", "see also: *{title}*": "另见：*{title}*",
    "{ms:g} ms per image is below what any runtime can do (calling a model costs about 0.05 ms on its own). Please "
    "give a budget of at least 0.1 ms.": "每张图 {ms:g} 毫秒低于任何运行时能做到的（光是调用一次模型就要约 0.05 毫秒）。请给出至少 0.1 毫秒的预算。",
    "{mb:g} MB is too small for any image model. Please allow at least 0.1 MB.": "{mb:g} MB 对任何图像模型都太小了。请至少允许 0.1 MB。",
    # -- the assistant (background work) -------------------------------------------------------------------
    "The exports were interrupted (the server restarted).": "导出被中断了（服务器重启过）。",
    "The exports were interrupted (the server restarted). Say *yes* to run them again.":
        "导出被中断了（服务器重启过）。说 *好的* 重新运行。",
    "Still exporting and measuring": "仍在导出和测量", ". I will post the results here when they are ready.": "。结果出来后会发在这里。",
    "The exports stopped: {error}. Say *yes* to try again.": "导出停止了：{error}。说 *好的* 再试一次。",
    "I would run **{tool}** with {args}.": "我将运行 **{tool}**，参数为 {args}。",
    "*(The language model failed: {error}; the built-in guide answers instead.)*": "*（语言模型出错：{error}；改由内置向导回答。）*",
    # -- devices (targets/devices.yaml names) ----------------------------------------------------------------
    "Raspberry Pi 4 Model B": "树莓派 4B", "Raspberry Pi 5": "树莓派 5", "Intel NUC 13 Pro": "英特尔 NUC 13 Pro",
    "NVIDIA Jetson Orin Nano 8 GB": "NVIDIA Jetson Orin Nano 8 GB", "Snapdragon 8 Gen 3 phone, CPU": "骁龙 8 Gen 3 手机（CPU）",
    "Apple A17 Pro phone": "苹果 A17 Pro 手机",
    # -- the app: title, tabs, buttons ---------------------------------------------------------------------
    "## edgefactory: from images to a model on your device": "## edgefactory：从图片到设备上的模型",
    "Hello! I take you from images to a model on your device. Upload a .zip of images, say **demo** for handwritten "
    "digits, or ask *what can you do?*": "你好！我可以带你从图片一路做到设备上的模型。上传一个图片 .zip，说 **演示** 使用手写数字，"
                                         "或者问 *你能做什么？*",
    "Type a message, or attach a .zip of images": "输入消息，或附上一个图片 .zip",
    "Datasets": "数据集", "Training": "训练", "Models & Reports": "模型与报告", "Deployments": "部署",
    "samples": "样例", "curves": "曲线", "confusion matrix": "混淆矩阵", "QR code: scan with a phone": "二维码：用手机扫描",
    "assistant": "助手", "Language": "语言",
    "No dataset yet: upload a .zip of images, or say **demo**.": "还没有数据集：上传一个图片 .zip，或者说 **演示**。",
    "No training yet.": "还没有训练。", "No model yet.": "还没有模型。", "Not deployed yet.": "还没有部署。",
    "Run `{run}`: **{status}**.": "运行 `{run}`：**{status}**。",
    "val {metric}": "验证集{metric}", "train loss": "训练损失",
    "**{model}**: test {metric} {score:.2%}": "**{model}**：测试集{metric} {score:.2%}",
    "[Benchmark report]({url})": "[基准测试报告]({url})",
    "**{name}:v{version}** ({target} {precision})\n\nEndpoint: `/v1/models/{name}/predict`; PAI-EAS: "
    "`/api/predict/{name}`; key id `{key}`\n\nPhone preview: {url}":
        "**{name}:v{version}**（{target} {precision}）\n\n接口：`/v1/models/{name}/predict`；PAI-EAS："
        "`/api/predict/{name}`；密钥 ID `{key}`\n\n手机预览：{url}",
    # -- the workspace tables --------------------------------------------------------------------------------
    "**In this workspace**": "**工作区中的全部内容**", "**Deployed in this workspace**": "**工作区中的部署**",
    "(this chat)": "（本次对话）", "not written yet": "尚未生成", "report": "报告",
    "| dataset | task | images | classes | imported |": "| 数据集 | 任务 | 图片 | 类别 | 导入时间 |",
    "| model | task | test metric | report | trained |": "| 模型 | 任务 | 测试指标 | 报告 | 训练时间 |",
    "| name | serves | endpoint |": "| 名称 | 提供的模型 | 接口 |",
}

# the capabilities list (chat_ui.words.CAPABILITIES: registered there under its English text)
CAPABILITIES = (
    "我可以离线带你从图片一路做到设备上的模型：\n"
    "1. **数据**：上传一个 .zip（每个类别一个文件夹、train/val/test 文件夹、Ku+ 的 `txfl-result.json` 或 CSV），"
    "说出一个已导入的数据集，或者说 *演示* 使用手写数字。我会检查数据并解释每个问题。\n"
    "2. **在哪里运行**：例如 *树莓派4，延迟小于30毫秒*、*安卓手机*、*英特尔 NUC*、*Jetson*，"
    "以及压缩最多可以损失多少精度（*精度下降不超过1个点*）。\n"
    "3. **训练方案**（模型、输入尺寸、时间预算）由你确认，然后**训练**并实时显示进度"
    "（问 *进度怎么样了* 或说 *停止*）。\n"
    "4. **评估**，然后按目标**压缩和导出**、生成**基准测试报告**并**部署**："
    "接口地址、curl 示例、API 密钥，以及一个在手机上打开模型的二维码。\n"
    "随时可以说：*返回上一步*、*重新开始*，或者问 *什么是 INT8？*、*可以上传哪些格式？*")
