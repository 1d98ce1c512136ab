"""Prompt-injection heuristics: the phrasings of injected instructions, in many languages and disguises.

A text is looked at as written and as a person (or a model) would read it: Unicode compatibility forms
folded (full-width letters), invisible characters dropped (zero-width spaces and joiners), look-alike
Cyrillic and Greek letters read as Latin, HTML entities and URL escapes decoded, digits read as letters
inside words (``1gn0r3``), and base64 blobs decoded. Each reading is matched against patterns for the
moves injections make: telling the reader to drop its instructions, addressing the AI that reads the
text, claiming new authority or a new task, asking for secrets or data to be sent out, hiding the
action from the person, and chat-template markers. The patterns cover English, Spanish, French,
German, Italian, Portuguese, Dutch, Polish, Russian, Swedish, Turkish, Vietnamese, Chinese, Japanese,
Korean and Arabic.
"""

from __future__ import annotations

import base64
import binascii
import html
import re
import unicodedata
import urllib.parse
from collections.abc import Iterator

__all__ = ["NEGATABLE", "PATTERNS", "negated", "readings"]


def _any(*words: str) -> str:
    return "(?:" + "|".join(words) + ")"


# fmt: off
IGNORE = _any(
    r"ignore", r"ignoring", r"disregard", r"forget", r"override", r"skip", r"discard", r"bypass", r"set aside",
    r"pay no attention to", r"do not follow", r"don'?t follow", r"stop following", r"drop", r"ignora(?:d|te|r)?",
    r"ignore[sz]?", r"olvid[aeé](?:d|n)?", r"omite", r"descarta", r"deja de lado", r"no sigas",
    r"no hagas caso (?:a|de)", r"oublie[zr]?", r"ne tiens? pas compte d", r"ne tenez pas compte d",
    r"fais abstraction d", r"ignorier(?:e|en|t)", r"vergiss", r"vergessen sie", r"missachte", r"dimentica(?:te)?",
    r"trascura", r"non seguire", r"non considerare", r"esque[çc]a", r"esquece", r"desconsider[ea]", r"negeer",
    r"vergeet", r"zignoruj", r"ignoruj", r"zapomnij", r"pomiń", r"игнорируй(?:те)?", r"проигнорируй(?:те)?",
    r"забудь(?:те)?", r"не обращай(?:те)? внимания на", r"ignorera", r"glöm", r"yok say", r"görmezden gel", r"unut",
    r"bỏ qua", r"quên", r"忽略", r"无视", r"無視", r"忘记", r"忘掉", r"不要理会", r"忘れて", r"무시", r"잊어",
    r"تجاهل", r"انس", r"잊고", r"잊으", r"strunta i", r"pay no attention to",
)
# fmt: on
# fmt: off
INSTRUCTIONS = _any(
    r"instructions?", r"prompts?", r"rules", r"directions", r"directives?", r"guidelines", r"guidance",
    r"constraints", r"context", r"(?:earlier |previous )?conversation",
    r"what (?:you|they) (?:were|have been) told", r"everything (?:above|before|else)",
    r"instrucciones", r"indicaciones", r"reglas", r"normas", r"directrices",
    r"todo lo (?:anterior|que te (?:dijeron|han dicho))", r"consignes", r"règles", r"tout ce qu'on t'a dit",
    r"anweisungen", r"regeln", r"vorgaben", r"instruktionen",
    r"alles,? was (?:dir|man dir|ihnen) (?:vorher |zuvor |bisher )?gesagt", r"istruzioni", r"regole",
    r"indicazioni", r"direttive", r"tutto (?:quello )?che ti (?:è stato detto|hanno detto)", r"instru[çc][õo]es",
    r"regras", r"orienta[çc][õo]es", r"diretrizes", r"tudo o que (?:te|lhe) disseram", r"instructies", r"regels",
    r"opdrachten", r"richtlijnen", r"wat je eerder (?:is|werd) (?:opgedragen|gezegd)", r"instrukcje", r"polecenia",
    r"zasady", r"reguły", r"инструкции", r"указания", r"правила", r"команды", r"instruktioner", r"regler",
    r"talimat\w*", r"kural\w*", r"hướng dẫn", r"chỉ dẫn", r"指令", r"指示", r"系统提示", r"提示词", r"规则",
    r"システムプロンプト", r"ルール", r"命令", r"지시", r"명령", r"규칙", r"프롬프트", r"التعليمات", r"القواعد",
    r"الأوامر",
)
# fmt: on
# fmt: off
PRIOR = _any(
    r"previous", r"prior", r"above", r"earlier", r"preceding", r"all", r"any", r"your", r"the", r"system",
    r"original", r"anteriores?", r"previas?", r"todas?", r"tus", r"précédentes?", r"toutes", r"tes", r"vos",
    r"du système", r"vorherigen?", r"alle", r"deine", r"bisherigen", r"precedenti", r"tutte", r"le", r"tue",
    r"anteriores", r"todas as", r"eerdere", r"vorige", r"je", r"poprzednie", r"wszystkie", r"swoje", r"предыдущие",
    r"все", r"свои", r"tidigare", r"önceki", r"tüm", r"trước đó", r"mọi", r"之前", r"以前", r"先前", r"所有",
    r"これまでの", r"すべての", r"이전", r"모든", r"السابقة", r"جميع",
)
# fmt: on
# fmt: off
PRIOR_AFTER = _any(
    r"anteriores?", r"previas?", r"précédentes?", r"antérieures?", r"precedenti", r"anteriori", r"eerdere",
    r"vorige", r"vorherigen", r"poprzednie", r"предыдущие", r"tidigare",
)
# fmt: on
# fmt: off
AI = _any(
    r"ai", r"a\.i\.", r"assistant", r"chatbot", r"bot", r"agent", r"model", r"llm", r"language models?",
    r"automated (?:reply |response )?(?:system|agent|assistant)", r"asistente", r"ia", r"assistente", r"modelo", r"ki",
    r"ki-assistent(?:en)?", r"assistenten", r"modell", r"modello", r"ai-assistent", r"asystent(?:a|ie)?",
    r"ассистент(?:а|у)?", r"модель", r"yapay zek[aâ](?: asistanı)?", r"asistan", r"trợ lý", r"助手",
    r"アシスタント", r"어시스턴트", r"المساعد", r"نموذج الذكاء الاصطناعي",
)
# fmt: on
# fmt: off
AI_TERM = _any(
    r"ai", r"a\.i\.", r"ia", r"ki", r"ии", r"llm", r"chatbot", r"assistant", r"asistente", r"assistente",
    r"asystent\w*",
    r"ассистент\w*", r"asistan\w*", r"virtual assistant", r"asistente virtual", r"assistente virtuale",
    r"(?:ai|ki|ia)[- ](?:assistent\w*|asistente|assistente|agents?|systems?|models?|modell|modelo|modello)",
    r"assistant ia", r"sprachmodell", r"modelo de lenguaje", r"modèle de langage", r"language models?",
    r"automated (?:reply |response )?(?:systems?|agents?|assistants?)",
    r"yapay zek[aâ]\w*", r"trợ lý(?: ai)?", r"ai助手", r"助手", r"aiアシスタント", r"アシスタント", r"ai\s*어시스턴트",
    r"어시스턴트", r"الذكاء الاصطناعي", r"المساعد(?: الذكي)?",
)
"""Names for the AI that reads a text, as an injection greets it (``Lieber KI-Assistent,``)."""
AI_WEAK = r"(?:models?|modelo|modell|modello|agents?|bots?|system)"
"""Words that name the AI only when greeted or written to (``para o modelo:``; not ``Model: Aurora X2``)."""
GREETING = _any(
    r"dear", r"hey", r"hello", r"hi", r"attention", r"fyi", r"heads-up", r"querid[oa]", r"estimad[oa]", r"hola",
    r"atención", r"cher", r"chère", r"bonjour", r"salut", r"lieber?", r"hallo", r"achtung", r"car[oa]", r"ciao",
    r"olá", r"oi", r"beste", r"drog[ia]", r"uwaga", r"дорогой", r"уважаемый", r"внимание", r"привет", r"sevgili",
    r"merhaba", r"kära", r"hej", r"亲爱的", r"尊敬的",
)
TOWARDS = _any(
    r"to", r"for", r"para(?: el| la| o| a)?", r"pour(?: l'| le| la)?", r"destin[ée]e? (?:à|a)(?: l')?",
    r"an(?: die| den| das)?", r"für(?: die| den| das)?", r"per(?: l'| il)?", r"voor(?: de| het)?", r"dla", r"для",
    r"gửi", r"إلى", r"致", r"给", r"給",
)
USER = _any(
    r"(?:the )?user(?:'s)?", r"(?:the )?customer(?:'s)?", r"(?:al |del )?usuario", r"(?:l')?utilisateur",
    r"(?:den |dem |des )?(?:nutzer|benutzer)s?", r"(?:l')?utente", r"(?:o )?usu[áa]rio", r"(?:de )?gebruiker",
    r"użytkownik\w*", r"пользовател\w*", r"用户", r"ユーザー", r"사용자", r"kullanıcı\w*", r"المستخدم",
    r"người dùng",
)
TASK = _any(
    r"task", r"job", r"goal", r"mission", r"objective", r"tarea", r"misión", r"tâche", r"aufgabe", r"ziel",
    r"compito", r"missione", r"tarefa", r"missão", r"taak", r"opdracht", r"zadani\w*", r"задача", r"цель",
)
REAL = _any(
    r"real", r"true", r"actual", r"new", r"verdader[oa]", r"nuev[oa]", r"vraie", r"véritable", r"nouvelle",
    r"eigentliche", r"wahre", r"neue", r"ver[oa]", r"nuov[oa]", r"verdadeir[oa]", r"nov[oa]", r"echte", r"nieuwe",
    r"prawdziw\w*", r"now\w*", r"настоящая", r"истинная", r"новая",
)
# fmt: on
# fmt: off
ADDRESSEE = _any(
    r"ai", r"a\.i\.", r"assistant", r"chatbot", r"llm", r"language models?",
    r"automated (?:system|agent|assistant)", r"ai (?:agent|model)", r"asistente", r"ia", r"assistente", r"ki",
    r"ki-assistent(?:en)?", r"ai-assistent", r"asystent(?:a|ie)?", r"ассистент", r"yapay zek[aâ](?: asistanı)?",
    r"trợ lý", r"助手", r"アシスタント", r"어시스턴트", r"المساعد",
)
# fmt: on
"""Who an injection speaks to at the start of a sentence (``Assistant, ...``); plain "model" or "agent"
name too many things in data (``The model: gpt-4o``) to count without a greeting."""
NOT_AI_ROLE = r"(?!\s*(?:manager|director|editor|coach|professor|teacher|principal|secretary|chef|store|app\b))"
# fmt: off
NOTE = _any(
    r"note", r"message", r"attention", r"instructions?", r"important", r"notice", r"directive", r"reminder",
    r"aviso", r"nota", r"mensaje", r"instrucci[oó]n(?:es)?", r"instru[çc][õo]es", r"anweisungen", r"consignes",
    r"importante", r"remarque", r"hinweis", r"achtung",
    r"nachricht", r"anweisung", r"avviso", r"istruzioni", r"aten[çc][ãa]o", r"mensagem", r"opmerking", r"bericht",
    r"let op", r"uwaga", r"wiadomo[śs][ćc]", r"примечание", r"внимание", r"сообщение", r"not", r"uyarı", r"mesaj",
    r"lưu ý", r"指示", r"注意", r"إلى",
)
# fmt: on
# fmt: off
TO = _any(
    r"to", r"for", r"para", r"pour", r"à", r"an", r"für", r"per", r"voor", r"do", r"dla", r"для", r"ao", r"al",
    r"a", r"cho",
)
# fmt: on
ARTICLE = r"(?:(?:the|any|el|la|l'|den|die|das|de|il|lo|o|a|het|der)\s*)?"
# fmt: off
SECRETS = _any(
    r"passwords?", r"credentials", r"api keys?", r"secrets", r"access tokens?", r"private keys?", r"tokens?",
    r"card (?:details|numbers?)", r"contraseñas", r"credenciales", r"datos de (?:pago|la tarjeta)",
    r"mots de passe", r"identifiants", r"passwörter", r"zugangsdaten", r"kennwörter", r"credenziali",
    r"dati di pagamento", r"senhas", r"wachtwoorden", r"hase[łl]", r"hasła", r"пароли", r"kart bilgi\w*",
    r"şifre\w*", r"mật khẩu", r"密码", r"パスワード", r"비밀번호", r"كلمات المرور",
)
# fmt: on
# fmt: off
DATA = _any(
    r"(?:customer|client|user)(?:'s)? (?:data|records|details|list|database|file|history|emails|addresses)",
    r"(?:customer|user|order|purchase|conversation|chat) (?:history|log|records)", r"(?:the )?user'?s inbox",
    r"conversation(?: log)?", r"contents of the user", r"customer database", r"datos del cliente", r"historial",
    r"liste (?:complète )?des clients", r"historique", r"kundendaten", r"dati del cliente", r"hist[óo]rico",
    r"klantgegevens", r"dane", r"данные клиента", r"данные", r"订单记录", r"电话号码", r"客户",
    r"kundens uppgifter", r"بيانات العميل", r"dados",
)
# fmt: on
# fmt: off
SEND = _any(
    r"send", r"forward", r"e-?mail", r"export", r"upload", r"post", r"share", r"include", r"reveal", r"disclose",
    r"reply with", r"output", r"print", r"list", r"envía", r"envia", r"manda", r"reenvía", r"exporta",
    r"envoie[sz]?", r"envoyez", r"transf[eè]re", r"sende", r"schick", r"gib", r"exportiere", r"invia", r"inoltra",
    r"envie", r"transfira", r"mande", r"stuur", r"verstuur", r"wyślij", r"prześlij", r"отправь", r"пришли",
    r"перешли", r"发送", r"发到", r"导出", r"发给", r"送って", r"教えて", r"gönder", r"أرسل", r"gửi", r"skicka",
)
# fmt: on
NEGATED = re.compile(r"(?i)\b(?:never|not|don'?t|do not|no|nunca|jamais|nie|niemals|mai)\b[^.\n]{0,12}$")

_PATTERNS: list[tuple[str, str]] = [
    (
        "override of earlier instructions",
        rf"{IGNORE}(?:[^.\n!?。]{{0,30}}?{PRIOR}[^.\n!?。]{{0,25}}?{INSTRUCTIONS}"
        rf"|[^.\n!?。]{{0,30}}?{INSTRUCTIONS}\s+{PRIOR_AFTER}|\s+(?:\w+\s+)?{INSTRUCTIONS}"
        r"|\s*(?:everything|anything|all|todo|tout|alles|tutto|tudo|alles)\b[^.\n]{0,25}"
        r"(?:you were told|you have been told|said before|before this|above|so far|anterior|avant|vorher|prima|antes))"
        rf"|{INSTRUCTIONS}[^.\n!?。]{{0,12}}?{IGNORE}",
    ),
    ("new instructions", r"\b(?:new|updated|real|actual|revised)\s+(?:system\s+)?instructions?\s*[:\-]"),
    (
        "claimed new task or authority",
        r"\bbegin new task|\byour (?:new|real|actual|true) (?:task|job|goal|objective|instructions?)\b"
        r"|\b(?:previous|prior|earlier|original|old) (?:task|instructions?|rules|constraints|guidance|directions)"
        r"(?: \w+){0,2} (?:is|are|was|were|have been|has been) (?:cancelled|canceled|void|outdated|obsolete|revoked|"
        r"suspended|a mistake|replaced|superseded|no longer valid|lifted)"
        r"|\b(?:rules|constraints|restrictions|guidelines|instructions) (?:\w+ ){0,2}no longer apply"
        r"|\bsupersedes? (?:everything|all|your|any|prior|previous)|\bnew (?:directive|priority)\b"
        r"|\bthe (?:actual|real) (?:request|instruction|task)\b"
        r"|\bthe (?:text|message|instructions?) above (?:was|were|is) "
        r"(?:a test|fake|void)|\beverything (?:(?:you were told|above|before this(?: line)?|so far) )+(?:is|was) "
        r"(?:outdated|a test|void|irrelevant|fake|cancelled)"
        r"|\b(?:your )?instructions (?:have|has) been (?:updated|changed|replaced)"
        r"|\bpolicy changed\b[^.\n]{0,40}\byou are now allowed|\byou are now (?:allowed|authori[sz]ed|permitted) to"
        rf"|\b(?:your|tu|ta|tua|deine?|twoim|twoje|твоя|seu|sua|je)\s+{REAL}\s+{TASK}|\bthe new (?:goal|task) is"
        r"|\btreat (?:everything|all)\b[^.\n]{0,30}\bas (?:void|cancelled|invalid|null)"
        r"|\binstructing (?:the |you,? )?(?:model|assistant|ai|agent|llm)",
    ),
    (
        "safety switched off",
        r"\b(?:safety|security|content) (?:guidelines|rules|polic(?:y|ies)|filters?|restrictions)\b[^.\n]{0,20}"
        r"\b(?:are|is|have been|has been|does not|do not)\s+(?:now )?"
        r"(?:suspended|disabled|lifted|off|void|removed|exist)"
        r"|\b(?:act|behave|respond|answer) as (?:though|if) you (?:have|had) no (?:restrictions|rules|limits|filters|"
        r"guidelines)|\b(?:as|like) an? (?:unfiltered|unrestricted|uncensored|jailbroken) (?:assistant|ai|model|bot)"
        r"|\bpretend (?:that )?(?:the )?(?:safety|content) polic",
    ),
    (
        "override mode",
        r"\b(?:enter|enable|activate|switch to|you are (?:now )?in|now in)\s+(?:developer|admin|god|dan|debug|"
        r"unrestricted|maintenance)\s+mode|\b(?:system|admin|developer|god)\s+override\b|\bjailbreak",
    ),
    (
        "message to the assistant",
        rf"\b{NOTE}\s+{TO}\s+{ARTICLE}{AI}\b{NOT_AI_ROLE}"
        rf"|(?:^|[\n.!?;>\"\-(]|\bp\.s\.)\s*(?:{GREETING}\s*,?\s+)?(?:{NOTE}\s+)?(?:{TOWARDS}\s*)?{AI_TERM}"
        r"(?:\s+\w+){0,2}?\s*[,:：!，](?!\d)"
        rf"|(?:^|[\n.!?;>\"\-(])\s*(?:{GREETING}\s*,?\s+|{NOTE}(?:\s+\w+)?\s+{TOWARDS}\s+|{TOWARDS}\s+)"
        rf"{ARTICLE}{AI_WEAK}(?:\s+\w+){{0,2}}?\s*[,:：!，](?!\d)"
        rf"|\b{GREETING}\s*,?\s+{AI_TERM}\s*[,:：!，]|{AI_TERM}\s*(?:の方へ|様|へ|에게)"
        r"|\b(?:rules|instructions|guidelines|directions)\s+for\s+(?:ai|llm|automated)\s+(?:agents|assistants|models|systems)"
        rf"|(?:助手|アシスタント)(?:请注意|請注意|へ|に|への指示)|{NOTE}\s*(?:for|to)?\s*{AI}\s*[:：]"
        r"|إلى (?:المساعد|نموذج الذكاء الاصطناعي)",
    ),
    (
        "the reading AI addressed",
        rf"(?:^|[\n.!?;:>\"\-(]|p\.s\.)\s*(?:dear |hey |hello |hi |attention,? |to |note to )?(?:any |the |an? )?"
        rf"(?:automated |ai |virtual )?{ADDRESSEE}(?: assistant| agent)?\s*[,:!：，](?!\d)"
        rf"|\b(?:dear|hey|hello|hi|attention,?)\s+(?:automated |ai |virtual )?{AI}\s*[,:!.]"
        r"|\b(?:if you are|whoever is|to whoever is|to the|to any|for any|any) (?:an? )?(?:automated |ai |virtual )?"
        r"(?:ai|assistant|agent|model|bot|llm|language model|system)s?\b(?: \w+){0,2} (?:reading|processing|"
        r"summari[sz]ing|handling|seeing|parsing)\b"
        r"|\bwhoever is (?:reading|summari[sz]ing|processing|handling) this"
        r"|\b(?:ai|assistant|agent|model|bot|llm|language model)s? (?:\w+ )?(?:reading|reads|processing|processes|"
        r"summari[sz]ing|handling|handles) this\b"
        r"|\bif you are an? (?:automated |ai |virtual )?(?:assistant|agent|model|ai|bot|language model|llm)\b"
        r"|\b(?:the )?(?:assistant|model|ai|agent|bot|llm) (?:must|should|shall|has to|needs to|is to) (?:now )?"
        r"(?:call|invoke|run|execute|approve|refund|transfer|delete|send|forward|email|export|close|cancel|mark|"
        r"rate|recommend|change|disclose|reveal|share|include|ignore)",
    ),
    (
        "concealment from the person",
        r"\b(?:do not|don'?t|never|without)\s+(?:tell|telling|inform|informing|notify|notifying|mention|mentioning|"
        r"alert|alerting|asking|ask)(?:ing)?\b[^.\n]{0,20}\b(?:the |this )?"
        r"(?:user|customer|human|account holder|them)\b"
        r"|\bnotify nobody|\b(?:quietly|secretly|silently) (?:call|approve|transfer|send|forward|delete|change|run)"
        r"|no (?:le )?digas nada al (?:usuario|cliente)"
        r"|sin (?:avisar|decir(?:le)? nada|informar|consultar) (?:al|a la|a) "
        r"(?:usuario|cliente|nadie)|ne (?:dis|dites) rien (?:au|à l'|à la) (?:client|utilisateur)"
        r"|sans (?:avertir|prévenir|informer|demander)|ohne (?:rückfrage|den kunden|den nutzer|zu fragen)"
        r"|sag (?:dem|es dem) (?:kunden|nutzer|benutzer) nichts|senza (?:chiedere|avvisare|informare)"
        r"|non dire (?:niente|nulla) al (?:cliente|utente)|sem (?:avisar|informar|perguntar|consultar)"
        r"|n[ãa]o (?:diga|conte|avise) (?:nada )?ao (?:cliente|usu[áa]rio)|zonder (?:te vragen|het te melden|de klant)"
        r"|non dire (?:niente|nulla) all'utente|söylemeden|알리지 말고|without telling"
        r"|bez (?:pytania|informowania)|не говори(?:те)? (?:пользователю|клиенту)|без подтверждения|не сообщай"
        r"|不要(?:通知|告诉)(?:用户|客户)|无需确认|(?:ユーザー|お客様)には伝えずに|伝えないで|知らせずに|haber vermeden"
        r"|دون إبلاغ|بدون إخبار",
    ),
    (
        "secrets requested",
        rf"{SEND}\b[^.\n]{{0,40}}?(?:saved |stored |all |every |the )?{SECRETS}"
        rf"|{SECRETS}[^.\n。]{{0,20}}?(?:を|를|을)?(?:教えて|送って|gönder|出力)",
    ),
    (
        "exfiltration",
        rf"{SEND}\b[^.\n]{{0,40}}?{DATA}[^.\n]{{0,40}}?\b(?:to|a|à|an|naar|na|на|para|al|ao|at)\b"
        rf"|{SEND}\b[^.\n]{{0,12}}?{DATA}|{DATA}[^.\n。]{{0,20}}?(?:发送|发到|导出)"
        r"|\bexport (?:the )?(?:customer|user|client) (?:database|list|data|records|file)",
    ),
    (
        "system prompt probe",
        r"\b(?:reveal|print|show|repeat|output|leak|display|disclose|revela|muestra|imprime|révèle|affiche|gib|zeige|"
        r"mostra|rivela|revele|mostre|toon|pokaż|покажи|выведи)\b[^.\n]{0,30}"
        r"(?:system ?prompt|your instructions|hidden instructions|initial prompt|prompt del sistema|prompt do sistema|"
        r"prompt système|systemprompt|системный промпт)|(?:システムプロンプト|시스템 프롬프트|系统提示)[^。\n]{0,10}"
        r"(?:を表示|を出力|출력|显示|输出)",
    ),
    (
        "chat template tokens",
        r"<\|(?:im_start|im_end|system|endoftext)\|>|\[/?INST\]|<</?SYS>>|^\s*#{1,}\s*(?:system|instruction)s?\b"
        r"|<\s*/?\s*system\s*>|\bsystem\s+(?:override|prompt)\s*[:\-]",
    ),
    (
        "field addressed to the assistant",
        r"[\"'](?:[\w-]*[_-])?(?:instructions?|notes?|directive|message|prompt|command)[_-](?:for|to)[_-](?:the[_-])?"
        r"(?:ai|assistant|agent|model|llm|bot)[\w-]*[\"']\s*:|[\"'](?:x-)?(?:ai|assistant|agent|llm|model|bot)[_-]"
        r"(?:instructions?|notes?|directive|prompt|message|command)[\"']\s*:",
    ),
    (
        "tool coercion",
        r"\b(?:immediately|now|must)\s+(?:call|invoke|run|use|execute)\s+(?:the\s+)?[`'\"]?[a-z_]+[`'\"]?\s+"
        r"(?:tool|function)\b|\b(?:call|invoke|execute|exécute[rz]?|ejecuta[r]?|chiama|ruf)\s+(?:the\s+)?[`'\"]?"
        r"[a-z]+_[a-z_]+[`'\"]?\s+(?:tool|function|for|with|on)\b",
    ),
    (
        "role reassignment",
        r"\b(?:you are now (?:in (?:developer|god|admin|dan) mode|no longer|free (?:from|of)|unrestricted|"
        r"jailbroken|dan\b|an? (?:unrestricted|unfiltered|jailbroken))|from now on,? you|"
        r"pretend (?:to be|you are)|act as (?:an? )?(?:dan|unrestricted|jailbroken))"
        r"|a partir de (?:ahora|maintenant|agora)\b[^.\n]{0,20}\b(?:tu|respondes|debes|dois|deves|vous)"
        r"|ab jetzt (?:bist du|musst du)|da ora in poi\b|vanaf nu (?:ben je|moet je)|отныне|теперь ты должен"
        r"|od teraz (?:jesteś|musisz)",
    ),
    (
        "the person overruled",
        rf"{IGNORE}\s+(?:\S+\s+){{0,3}}?{USER}|{USER}\S{{0,8}}?(?:無視|忽略|不要理会)"
        r"|(?:no obedezcas|no escuches|n'écoute pas|hör nicht auf|non ascoltare|não obedeça|não escute|не слушай|"
        r"do not obey|don'?t listen to)\s+(?:a |al |à |l'|den |dem |o |ao )?" + USER,
    ),
    (
        "the person's request overruled",
        r"\b(?:do not|don'?t|stop) (?:follow|obey|answer)(?:ing)? (?:the )?(?:user|customer|human)(?:'s)? "
        r"(?:request|question|instructions?)|\bignore (?:the )?(?:user|customer)(?:'s)? (?:question|request)"
        r"|ignore o pedido do usu[áa]rio|ignora la (?:pregunta|petición) del usuario",
    ),
]
# A match starts at the start of a word or at a punctuation mark, never inside an ASCII word or on a space
# (CJK has no spaces, so any non-ASCII letter may start one): the engine then skips most positions at once
# instead of trying every lexicon there (several times faster on long texts).
PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    (
        name,
        re.compile(r"(?:(?<![A-Za-z0-9])(?=\S)|(?=[\n.!?;:>\"\-(]))(?:" + pattern + ")", re.IGNORECASE | re.MULTILINE),
    )
    for name, pattern in _PATTERNS
]
"""(name, pattern) pairs; a match in any reading of a text is a finding."""
NEGATABLE = frozenset({"secrets requested", "concealment from the person", "exfiltration"})

_INVISIBLE = re.compile(
    r"[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    r"\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]"
)
_LOOKALIKE = str.maketrans(
    "аеорсухіјѕԁɡкмтвнΑΒΕΖΗΙΚΜΝΟΡΤΥΧαεικνορτυχ",
    "aeopcyxijsdgkmtbhABEZHIKMNOPTYXaeiknoptux",
)
_LEET = str.maketrans("0134578@$", "oieastbas")
_LEET_WORD = re.compile(r"\b(?=[a-z0-9@$]*[a-z])(?=[a-z0-9@$]*[0-9@$])[a-z0-9@$]{3,}\b", re.IGNORECASE)
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")
_URL_ESCAPED = re.compile(r"%[0-9A-Fa-f]{2}|\w\+\w+\+\w")


def readings(text: str) -> Iterator[tuple[str, str]]:
    """`text` as written, then each other way it may be read: ``(how, reading)``, each reading once."""
    seen = {text}
    yield "", text
    plain = _INVISIBLE.sub("", unicodedata.normalize("NFKC", text))
    plain = html.unescape(plain)
    if _URL_ESCAPED.search(plain):
        plain = urllib.parse.unquote_plus(plain)
    candidates = [("normalised", plain), ("look-alike letters", plain.translate(_LOOKALIKE))]
    candidates.append(("digits as letters", _LEET_WORD.sub(lambda m: m.group().translate(_LEET), plain)))
    for blob in _BASE64.findall(plain):
        try:
            decoded = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            continue
        if decoded.isprintable() or all(c.isprintable() or c.isspace() for c in decoded):
            candidates.append(("base64", decoded))
    for how, reading in candidates:
        if reading not in seen:
            seen.add(reading)
            yield how, reading


def negated(reading: str, start: int) -> bool:
    """Whether the phrase at `start` is said in the negative (``never reveal passwords``)."""
    return NEGATED.search(reading[max(0, start - 24) : start]) is not None
