import random, base64, json
random.seed(9)
rows = []  # (kind, text, value)
def add(kind, tmpl, value):
    rows.append((kind, tmpl.replace("{}", value), value))

ctx = [
 "Please contact {} about the invoice.", "Mi correo es {} por favor.", "Meine Adresse: {} – danke!",
 "请发送到 {} 谢谢", "連絡先は {} です。", "Écrivez à {} avant lundi.", "My details: {}.", "{}",
 "Kontakt: {}, bitte.", "Numéro : {} (bureau)", "The value ({}) was rejected", "ID={};",
]
def c(i): return ctx[i % len(ctx)]

# emails
emails = ["jane.doe@example.com","j.smith+news@mail.example.org","info@müller-test.de".replace("ü","ue"),"a_b-c%d@sub.domain.co.uk",
 "x@y.io","first.last@company.travel","support@llmux.dev","o'neil@example.com".replace("'",""),"user123@gmail.com","ANNA.K@EXAMPLE.NET",
 "li.wei@qq.com","tanaka@example.jp","müller@beispiel.de".replace("ü","ue"),"jose@correo.es","noreply@github.com","ops-team@corp.internal.example.com",
 "a@b.cd","m.rossi@libero.it","sales@acme-corp.com","k9@dogs.example"]
for i,e in enumerate(emails): add("EMAIL", c(i), e)
for t in ["Use @mention to notify", "icon@2x.png is the retina asset", "npm install lodash@4.17.21", "user@localhost is not routable",
          "email me at name at example dot com", "price: 5@3.50 each", "@@ -1,4 +1,5 @@", "foo@bar", "see docs@ version 2", "git tag v1.2.3@",
          "ssh -i key root@10", "a..b@example.com is invalid"]:
    rows.append(("-", t, ""))

# cards
def luhn_complete(prefix, length):
    while True:
        body = prefix + "".join(random.choice("0123456789") for _ in range(length-len(prefix)-1))
        for d in "0123456789":
            n = body + d
            s=0
            for i,ch in enumerate(reversed(n)):
                v=int(ch)
                if i%2==1:
                    v*=2
                    if v>9: v-=9
                s+=v
            if s%10==0: return n
def group(n, sizes, sep):
    out=[];i=0
    for s in sizes: out.append(n[i:i+s]); i+=s
    return sep.join(out)
cards=[]
for p,l in [("4",16),("4",16),("51",16),("55",16),("2221",16),("34",15),("37",15),("6011",16),("65",16),("3530",16),("36",14),("62",16),("4",13),("5",16)]:
    if p=="5": p="53"
    cards.append((p,l,luhn_complete(p,l)))
for i,(p,l,n) in enumerate(cards):
    if l==15: v = group(n,[4,6,5]," " if i%2 else "-")
    elif l==16: v = [n, group(n,[4,4,4,4]," "), group(n,[4,4,4,4],"-")][i%3]
    else: v=n
    add("CARD", c(i), v)
for v in ["4111111111111111","5500 0000 0000 0004","3400-000000-00009"]:
    add("CARD", "Test card {} declined", v)
def luhn_break(n):
    last = int(n[-1]); return n[:-1]+str((last+1)%10)
for i,(p,l,n) in enumerate(cards[:8]):
    rows.append(("-", "Order number %s shipped" % luhn_break(n), ""))
for t in ["Tracking 1Z999AA10123456784", "Invoice 2024-000123-4567", "Account 1234567890123456 closed", "Timestamp 1717171717171 ms",
          "ISBN 978-3-16-148410-0", "serial 9999 8888 7777 6666", "build 20240115093000123", "nanoseconds: 1700000000000000000",
          "Order #7766554433221100 confirmed", "Tel. 0000 0000 0000 0000"]:
    rows.append(("-", t, ""))

# IBAN
def iban(cc, bban):
    s = bban + cc + "00"
    num = "".join(str(int(ch,36)) for ch in s)
    chk = 98 - int(num)%97
    return cc + "%02d" % chk + bban
ibans = [iban("DE","370400440532013000"), iban("GB","NWBK60161331926819"), iban("FR","20041010050500013M02606"),
         iban("ES","21000418450200051332"), iban("NL","ABNA0417164300"), iban("IT","X0542811101000000123456"),
         iban("CH","0076201162385295 7".replace(" ","")[:17]), iban("BE","539007547034"), iban("PL","109010140000071219812874"),
         iban("AT","1904300234573201"), iban("SE","50000000058398257466"), iban("NO","86011117947"), iban("PT","000201231234567890154"),
         iban("IE","AIBK93115212345678"), iban("DK","00400440116243")]
for i,v in enumerate(ibans):
    if i%2==0:
        v = " ".join(v[j:j+4] for j in range(0,len(v),4))
    add("IBAN", ["IBAN: {}", "Bitte überweisen Sie an {}.", "Virement sur le compte {}", "Cuenta {} (nómina)", "{}"][i%5], v)
for t in ["DE89370400440532013001 is wrong", "GB00NWBK60161331926819", "FR7630006000011234567890188 typo", "XX12345678901234567890", "NL00ABNA0000000000",
          "Model DE12 engine", "code GB82 WEST"]:
    rows.append(("-", t, ""))

# SSN
for i,v in enumerate(["123-45-6789","536-22-1943","001-01-0001","772-34-5678","321 54 9876","665-12-3456","078-12-1120","899-99-9998","234-56-7890","401-23-4567"]):
    add("SSN", ["SSN: {}", "Social security number {}", "su número de seguro social es {}", "{}", "employee ssn={}"][i%5], v)
for t in ["000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567", "123-45-0000", "078-05-1120", "219-09-9999", "Part no. 123-45-67890",
          "Date 2024-01-15", "call 555-12-3456-7", "version 1.23.45-6789"]:
    rows.append(("-", t, ""))

# Phones
phones = ["+1 415 555 2671","(415) 555-2671","415-555-2671","+44 20 7946 0958","020 7946 0958","+49 30 12345678","030 12345678",
          "+33 6 12 34 56 78","06 12 34 56 78","+81 3-1234-5678","+91 98765 43210","+55 11 91234-5678","+1-212-555-0147","212.555.0147",
          "+34 612 34 56 78","+39 06 6982 1234","+86 138 0013 8000","+61 2 9374 4000","0151 23456789","+49 151 23456789","+44 7911 123456","1-800-555-0199"]
for i,v in enumerate(phones):
    add("PHONE", ["Call me at {}", "Rufen Sie mich unter {} an.", "Mon numéro: {}", "电话：{}", "電話番号は {} です", "Tel {}", "{}", "Llámame al {}"][i%8], v)
for t in ["Order 4155552671 shipped", "2024-01-15 10:30:00", "15-01-2024", "Error code 0x80070005", "Build 1.2.3.4567",
          "Room 1203, floor 12", "Year 1999 to 2024", "Port 8080 and 443", "Invoice #12345678", "Temperature -12.5 to 30.2",
          "pi is 3.14159265358979", "chapter 12.4.1", "ratio 16:9", "Items 1-2-3-4", "Total: 1,234,567.89", "call 123", "PIN 0000",
          "+1", "Score 100-95", "Version 10.0.19041.1"]:
    rows.append(("-", t, ""))

# IP
ips4 = ["192.168.1.10","10.0.0.1","8.8.8.8","172.16.254.1","203.0.113.42","255.255.255.0","127.0.0.1","100.64.0.7"]
ips6 = ["2001:db8::1","fe80::1ff:fe23:4567:890a","2001:0db8:85a3:0000:0000:8a2e:0370:7334","::1","2606:4700:4700::1111"]
for i,v in enumerate(ips4):
    add("IP", ["Server at {} is down", "Die IP-Adresse {} ist blockiert", "来自 {} 的请求", "connect to {}:8080", "{}", "host={}"][i%6], v)
for i,v in enumerate(ips6):
    add("IP", ["Server at {} is down", "Die IP-Adresse {} ist blockiert", "来自 {} 的请求", "connect to [{}]:8080", "{}", "host={}"][i%6], v)
for t in ["version 1.2.3.4", "v10.0.0.1", "1.2.3", "256.1.1.1", "192.168.1", "10:30:45", "00:1a:2b:3c:4d:5e", "std::vector<int>",
          "a::b", "Release 2024.01.15.3", "1.2.3.4.5", "01.02.03.04", "MAC aa:bb:cc:dd:ee:ff", "time 12:00", "add::bed"]:
    rows.append(("-", t, ""))

# secrets
def b64(d): return base64.urlsafe_b64encode(json.dumps(d,separators=(",",":")).encode()).rstrip(b"=").decode()
def rnd(chars,n): return "".join(random.choice(chars) for _ in range(n))
A="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
U="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
secrets = [
 ("AWS_KEY","AKIAIOSFODNN7EXAMPLE"),("AWS_KEY","ASIA"+rnd(U,16)),("AWS_KEY","AKIA"+rnd(U,16)),("AWS_KEY","AROA"+rnd(U,16)),
 ("API_KEY","sk-"+rnd(A,48)),("API_KEY","sk-proj-"+rnd(A,40)+"_"+rnd(A,20)),("API_KEY","sk-ant-api03-"+rnd(A,80)+"-"+rnd(A,10)+"AA"),("API_KEY","sk-svcacct-"+rnd(A,30)),
 ("GITHUB_TOKEN","ghp_"+rnd(A,36)),("GITHUB_TOKEN","gho_"+rnd(A,36)),("GITHUB_TOKEN","ghs_"+rnd(A,36)),("GITHUB_TOKEN","github_pat_11"+rnd(A,20)+"_"+rnd(A,59)),
 ("SLACK_TOKEN","xoxb-"+rnd("0123456789",12)+"-"+rnd("0123456789",12)+"-"+rnd(A,24)),("SLACK_TOKEN","xoxp-"+rnd("0123456789",11)+"-"+rnd(A,20)),("SLACK_TOKEN","xapp-1-"+rnd(U,11)+"-"+rnd("0123456789",13)),
 ("JWT",b64({"alg":"HS256","typ":"JWT"})+"."+b64({"sub":"1234567890","name":"John","iat":1516239022})+"."+rnd(A+"-_",43)),
 ("JWT",b64({"alg":"RS256","kid":"abc"})+"."+b64({"iss":"https://auth.example.com","exp":1900000000})+"."+rnd(A+"-_",86)),
 ("PRIVATE_KEY","-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA"+rnd(A,64)+"\n"+rnd(A,64)+"\n-----END RSA PRIVATE KEY-----"),
 ("PRIVATE_KEY","-----BEGIN PRIVATE KEY-----\nMIIEvgIBADANBg"+rnd(A,64)+"\n-----END PRIVATE KEY-----"),
 ("JWT",b64({"typ":"JWT","alg":"ES256"})+"."+b64({"sub":"user-42","aud":"api"})+"."+rnd(A+"-_",64)),
 ("JWT",b64({"alg":"none"})+"."+b64({"sub":"x","admin":True})+"."+rnd(A+"-_",20)),
 ("SLACK_TOKEN","xoxp-"+rnd("0123456789",12)+"-"+rnd("0123456789",12)+"-"+rnd(A,32)),
 ("PRIVATE_KEY","-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI"+rnd(A,50)+"\n-----END EC PRIVATE KEY-----"),
 ("PRIVATE_KEY","-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA"+rnd(A,60)+"\n-----END OPENSSH PRIVATE KEY-----"),
]
for i,(k,v) in enumerate(secrets):
    add(k, ["my key is {}", "export TOKEN={}", "Authorization: Bearer {}", "Der Schlüssel lautet {}", "{}"][i%5], v)
for t in ["sk-learn-pipeline-configuration-guide", "AKIA is a prefix", "AKIAIOSFODNN7EXAMPL", "ghp_short", "xoxb-not-a-token", "eyJhbGciOi is cut",
          "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----", "-----BEGIN CERTIFICATE-----",
          "task-1234567890abcdefghijkl", "github_pat", "UUID 550e8400-e29b-41d4-a716-446655440000", "trace 4bf92f3577b34da6a3ce929d0e0e4736",
          "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "commit 3b36f3a8c1d2e4f5a6b7c8d9e0f1a2b3c4d5e6f7",
          "base64 aGVsbG8gd29ybGQ=", "ask-for-help-channel-with-a-long-name", "desk-12345678901234567890"]:
    rows.append(("-", t, ""))

# multilingual & misc negatives
for t in ["Привет, как дела? Встреча в 10:30.", "東京タワーは333メートルです。", "مرحبا بك في المتجر رقم 42", "Der Zug fährt um 14:05 von Gleis 7.",
          "El pedido 2024-5531 llega el 3 de mayo.", "La réunion est prévue le 12/03/2024 à 9h.", "价格是 1999 元，折扣 20%。", "안녕하세요, 주문번호 12345입니다.",
          "Meet at 221B Baker Street", "Call of Duty 4", "UUID: 123e4567-e89b-12d3-a456-426614174000", "Timestamp 2024-06-01T12:34:56Z",
          "semver 2.14.3-rc.1+build.5", "HTTP/1.1 200 OK", "Coordinates 48.8566, 2.3522", "ISO 8601: 20240115T093000",
          "The answer is 42.", "RGB(255, 128, 0)", "Matrix [[1,2],[3,4]]", "Model gpt-4o-2024-08-06", "SKU A1-B2-C3-D4",
          "Tracking number 9400 1000 0000 0000 0000 00", "Line 1234 of main.go", "Fahrenheit 451", "Zip code 94103",
          "room 101 and 102", "the years 1914-1918", "bin/sh -c 'echo hi'", "Frame 00:01:23:45", "¡Hola! ¿Qué tal?"]:
    rows.append(("-", t, ""))


import uuid
for i in range(12):
    rows.append(("-", "request id %s" % uuid.UUID(int=random.getrandbits(128)), ""))
for i in range(10):
    rows.append(("-", "at 20%02d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (random.randint(10,30),random.randint(1,12),random.randint(1,28),random.randint(0,23),random.randint(0,59),random.randint(0,59),random.randint(0,999)), ""))
for i in range(10):
    rows.append(("-", "upgrade to v%d.%d.%d (build %d)" % (random.randint(0,30),random.randint(0,99),random.randint(0,999),random.randint(1000,99999)), ""))
for i in range(10):
    rows.append(("-", "Order #%d-%d" % (random.randint(100000,999999),random.randint(1000,9999)), ""))
for i in range(10):
    p,l = [("4",16),("51",16),("37",15),("6011",16),("35",16)][i%5]
    if p=="35": p="3566"
    n = luhn_complete(p,l)
    add("CARD", ["Kartennummer {} gültig bis 12/27", "numéro de carte {}", "卡号 {}", "card: {} exp 01/29", "Tarjeta {}"][i%5], n)
for i,e in enumerate(["maria.garcia@empresa.es","hans.schmidt@firma.de","wang.fang@163.com","yamada.taro@example.co.jp","pierre.dupont@orange.fr",
                      "ivan.petrov@yandex.ru","ahmed@example.ae","s.kim@naver.com","olga+test@mail.ru","dev.null@example.museum"]):
    add("EMAIL", ["Schreiben Sie an {}", "Escríbeme a {}", "请联系 {}", "メール：{}", "Envoyez un mail à {}", "Пишите на {}", "راسلني على {}", "연락처 {}", "{}", "cc: {}"][i], e)
for i,v in enumerate(["+7 495 123-45-67","+82 2-312-3456","+971 4 366 5000","+48 22 123 45 67","+31 20 123 4567","+46 8 123 456 78"]):
    add("PHONE", ["Телефон: {}", "전화 {}", "هاتف {}", "Telefon {}", "Bel {}", "Ring {}"][i], v)

with open("labelled.tsv","w") as f:
    f.write("# kind\ttext (\\n for a newline)\tvalue: the labelled set of docs/redaction.md (generated once, then edited by hand)\n")
    for k,t,v in rows:
        f.write("%s\t%s\t%s\n" % (k, t.replace("\\","\\\\").replace("\n","\\n"), v.replace("\\","\\\\").replace("\n","\\n")))
print(len(rows))
