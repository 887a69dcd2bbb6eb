//! Words: the dictionary that tells real words from typos, and cutting a name into words.

use std::collections::HashSet;

/// English and software words: a name that is one of these is not a typo of a popular name, and
/// with the popular names they train the readability model. Lowercase, space-separated.
pub(super) const WORDS: &str = "
a able about above access account act action active activity actor adapter add address admin
admins advanced after again against age agent agents air alarm alert alerts algorithm all allow
alone along alpha already also alter always amber among amount analysis analytics analyzer anchor
and android angle animal annotate another answer any anything apache apart api apis app apple
apply apps april arbiter arch archive area argument arm army around array arrow art article artifact
artifacts artist ask asset assets assistant async atlas atom attach audio audit august auth author
auto automation autoscaler available avatar average away awesome axis baby back backend backup
backups bad badge bag bake baker balance balancer ball band bank bar barrier base based basic
basket batch battle beacon beam bear beat beautiful because become bed been beer before begin
behind being bell below belt bench benchmark best beta better between beyond big bill billing bin
binary bind bird birth bit bits black blade blank blast blob block blocks blog blood bloom blue
board boat body bold bolt bone book books boost boot border both bottle bottom bounce bound box
boxes brain branch brand bread break breeze brick bridge brief bright bring broad broker brown
browser bucket budget buffer bug bugs build builder builds bulk bundle burn burst bus business
busy but button buy cable cache caching cake calendar call calm camera camp campaign can canary
candle candy canvas cap capital capture car carbon card care cargo carry cart case cash cast
castle cat catalog catch cause cell cellar center central certain chain chair challenge champion
change channel chaos chapter charge chart chat cheap check checker checkout cheese chef chess child
chip choice chrome chunk circle citizen city claim class classic clean cleaner clear clerk click
client cliff climate clock clone close cloud club cluster coach coast code coder codes coffee
coin cold collect collector color column combine come comfort command comment commerce commit
common community company compare compiler complete compose compute computer concept config
connect connector console consumer contact container content context contract control controller
convert converter cook cookie cool copy core corner cost cotton could count counter country couple
course court cover craft crane crash crate crater crawler cream create creator credit crew
crisis cross crowd crown crypto crystal cube culture cup curl current cursor curve custom customer
cut cyber cycle daemon daily damage dance danger dark dash dashboard data database date day dead
deal dealer dear debate debug debugger decide deck deep default defense degree delay delta demand
demo deploy deployer depth design desk desktop detail detect detector dev devel develop developer
device devices diary diff digital dinner direct director dirt disk dispatch display distance diver
dns doc dock docker docs document dog doing dollar domain done door dot double down download draft
dragon drain draw dream dress drift drill drink drive driver drop drum dry duck dust duty dynamic
each eagle early earth east easy echo edge edit editor effect egg eight either elastic element
else email ember emerald empty emulator end endpoint energy engine enter entry environment epic
equal error escape estate event events every evidence exact example exchange exec exit expert
explorer export exporter express extension extra extract extractor eye fabric face fact factory
fail fair faith fall false family fan far farm fast father fault feature fee feed feedback feel
fence fetch fetcher few field fight figure file files fill film filter final finance find fine
finger finish fire firewall first fish fit five fix fixed flag flame flash fleet flight float flood
floor flow flower fly focus fog fold folder follow food foot for force forest forge fork form
format forms fortune forum forward found fox frame free fresh friend from front frontend frost
fruit fuel full fun function fund future galaxy game garden gas gate gateway gather gear general
generator gentle ghost giant gift girl give glad glass global glow goal gold golden good govern
grab grace grade grain grand grant graph grass gray great green grid ground group grow guard guess
guest guide gun habit hair half hall hammer hand handle handler hang happy harbor hard harvest hash
have hawk head health heap hear heart heat heavy hello help helper hero hidden high hill hint
history hit hold hole holiday home hook hooks hope horizon horse host hosting hot hotel hour house
how http https hub huge human hunter ice icon idea identity image images impact import importer
inbox income index indexer infra ingress init input insight inspect inspector install installer
instance instant insure internal into invoice iron island issue item its jacket java jet job jobs
join journal joy judge juice jump jungle junior just keen keep kernel key keys kid kind king
kitchen kite knife know known knows label labs lake lambda lamp land lane language large laser
last late later launch launcher law lawn layer lead leader leaf league learn least leave ledger
left legacy legal lemon length lens lesson letter level library life light like limit line link
linter lion liquid list listen listener little live load loader local lock locker log logger logic
login logs long look loop lord lost lot loud love low lucky lunar lunch machine magic mail mailer
main maker mall man manage manager mango manual map mapper marble march margin market mask master
match math matrix matter max maximum may maybe meal mean measure media medium meet member memory
mention menu merge mesh message metal meter method metrics middle middleware might mind mine mini
minimal minor mint minute mirror miss mission mix mobile mock mode model models modern module
moment money monitor month moon more morning most mother motion motor mountain mouse mouth move
movie much music must name native nature near neat need nerve nest net network never new news
next nice night nine noble node nodes noise none north nose not note notebook notes nothing notice
notifier novel now number nurse oak object ocean offer office often oil old omega once one online
only open opera operator option orange orbit order origin other outer output outside oven over
owner oxygen pace pack package packer packet page pages paint pair palace panel paper parcel parent
park parser part party pass past patch path patrol pattern pause pay peace peak pearl pen people
pepper perfect period person pet phase phone photo photos piano pick picture piece pilot pin pine
pipe pipeline pitch pixel pizza place plan planet plant plate platform play player please plot
plugin plugins plus pocket poem point poke polar police policy poll poller pond pool poor pop port
portal position post potato pound power practice press pretty price pride prime print printer
private prize probe problem process processor produce producer product profile profiler program
project promise prompt proof proper property protect proto proxy public publisher pull pulse pump
punch pure purple push pusher put puzzle quality quantum quarter queen query quest question queue
quick quiet quote rabbit race radar radio rail rails rain random range rapid rate raven raw reach
read reader ready real reason receiver record recorder red redirect redux reds reef region registry
relay release remote render renderer rent repair repeat replica reply repo report reporter request
rescue reset resolver resource response rest result retro return review reward rich ride right
ring rise risk river road robot rock rocket role roll roof room root rope rose round route router
row royal rule ruler run runner runtime rush rust rusty safe sail salt same sample sand sandbox
save say scale scan scanner scene schedule scheduler schema school science scope score scout
scraper screen script scripts sea search season seat second secret secrets section secure security
seed seek select self sell send senior sense sensor sentry server service services session set
setup seven shadow shake shape share shark sharp shed sheep sheet shelf shell shield shift shine
ship shop short shot should show side sidecar sign signal signer silent silver simple single sink
sister site six size skill skin sky sleep slice slide slim slow small smart smile smoke snake snap
snow social socket soft solar soldier solid solo solution some song sort sound source south space
spare spark speak special speed spell spend spider spin spirit split splitter sport spot spring
square stable stack staff stage stand star stark start state static station status stay steam
steel step stick still stock stone stop storage store stores storm story stream streamer street
strike string strong studio study style subject submit success such sugar suite summer sun super
supply support sure surface swap sweet switch symbol sync syncer system table tail tails take talk
tank target task tasks taste tax tea teach team tech template ten tender term terminal test tester
tests text than thank that the theme then theory there these thing think third this thread three
thrift thrifty through throw thunder ticket tide tiger time timer tiny tip title toast today token
tool toolbox toolkit tools top topic total touch tour tower town toy trace tracer tracing track
tracker trade traffic trail train transfer translate translator trap travel tree trend trial
tribe trick trigger trip true trust try tune tunnel turbo turn twin two type ultra under union unit
units universe unix until update updater upload uploader upper urban usage use user users util
utils valid validator valley value vapor vault vector vendor venture version very video view viewer
village virtual vision visit visual voice void volume vote voyage wait walk wall wallet war warm
warn watch watcher water wave way weather web webapp webhook webhooks website week weight welcome
well west what wheel when where which while white whole why wide widget wild will win wind window
wine wing winter wire wise wish with wizard wolf woman wonder wood word work worker workers
workflow world worth would wrapper write writer yard year yellow yes yet yield young zero zone zoom
abc acme ansible apm argocd awscli azure bazel bitbucket buildkit caddyfile certbot chromium
cloudflare cockroach conda coredns cuda dapr deno devops distroless django dotnet dynamodb envoy
etcd eureka fastapi filebeat flask flutter fluentbit gitea github gitlab gradle grafana graphql
grpc gunicorn hadoop helm hugo jaeger jenkins jira jupyter kafka kaniko keycloak kibana kotlin
kube kubectl kubernetes laravel linkerd linux loki minio mongod mongodb mssql mysqld nagios netdata
nextjs nodejs numpy oauth openapi openldap openssl openvpn pandas pgadmin phoenix podman postgresql
powershell prometheus pytest pytorch qemu rclone react reactjs redash selenium sentinel sonar spring
sqlite squid supervisor svelte swagger symfony tensorflow terraform thanos typescript ubuntu unbound
uvicorn valkey vitess vuejs webpack wireguard wordpress xcode yarn zabbix zipkin zsh alpine debian
centos fedora nginx redis mongo mariadb postgres python golang ruby rust node perl php java
";

/// English words a letter or two from a popular name, or that look random (`rhythms`): they are
/// real words, not typos or random names. Generated once from a dictionary (wamerican) by running
/// the detectors over it; plurals of popular names are left out, as they are squats.
pub(super) const NEAR_WORDS: &str = "
admire admirer alien aline ants apace backstop bonito botnet breadths canto cantos cants
capacitor careens cares cents chutzpah circled cirrus citrus clefs clefts clerks clink closure
cloture colic composed composes compost consult corals cored cores corks corps cotes cradle
crone cures curios daddy decked demijohn demijohns dicier dicker dingo docked docket donut
ducked eclipsed eighths elapse elicit ellipse ersatz fails femora flank flaunt flint fluent
flung flunk fount garnish gentry goggle going goofy googled gouge grads grape gravy groove
growths gulag hairsbreadths hatch howdahs hurrahs hutch hutzpa hutzpah hying hyping jabbed
jabber jailer jerkins jibbed jiujitsu jobbed jogger kibbutz kibitz kilohertz kinder klutzier
klutzy kohlrabi kohlrabies lengths lengthways maharajahs mania maniac manic manics maria matzohs
mavin mocker mosquito mukluk mukluks mynahs notify nymphs persona pertained pharaohs pinhole
piped piton plane plastic posters postures proton quartz rajahs ranched ranches rancor ranger
redid redone remind rhythm rhythms robber rocker roils rotary ruts salsa sates schmaltz
schmaltzy schmalz schmalzy shrift sipped sloped sniped soaped soiled souped spiced spied spies
spiked spilled spited stork swill swiped sylphs tangelo tarnish telegram theft thousandths
thumbscrew tomes triumphs twelfths vanish votary widths wilder yours yukked trails nodded
";

/// `s` cut into words of `vocab`, if it can be.
pub(super) fn segment<'s>(s: &'s str, vocab: &HashSet<String>) -> Option<Vec<&'s str>> {
    if s.is_empty() {
        return None;
    }
    // back[i]: where the last word of a segmentation of s[..i] starts.
    let mut back: Vec<Option<usize>> = vec![None; s.len() + 1];
    for end in 1..=s.len() {
        back[end] = (0..end)
            .find(|&start| (start == 0 || back[start].is_some()) && vocab.contains(&s[start..end]));
    }
    back[s.len()]?;
    let mut words = Vec::new();
    let mut end = s.len();
    while end > 0 {
        let start = back[end]?;
        words.push(&s[start..end]);
        end = start;
    }
    words.reverse();
    Some(words)
}
