// The embedded default corpus: about 27 KB of plain English prose written for this project
// (essays, letters and short scenes), the training text when `data: {type: text}` has no path.
#include "engine/embedded_corpus.h"

namespace autotp {

namespace {

// Each section is one raw string literal; adjacent literals concatenate.
constexpr std::string_view kCorpus =
    R"corpus(
A neural network learns by guessing, measuring how wrong the guess was, and nudging its
weights so that the next guess is a little better. The guess is called the forward pass.
The measure of error is called the loss. The nudge comes from the backward pass, which
walks the recorded graph of operations in reverse and computes, for every weight, how
much the loss would change if that weight moved a tiny step. An optimizer then moves
each weight a small distance against its gradient, and the whole cycle starts again.

A language model is trained on text. It reads a few characters or words and tries to
predict the one that comes next. At the start it knows nothing, so every byte looks
equally likely and the loss is the logarithm of the number of choices. After a few
hundred steps it has learned that spaces follow words, that the letter q is followed by
u, and that a sentence ends with a period. After many more steps it learns grammar,
facts and style. The model in this demo is tiny, but the loop is the same one that
trains the largest models in the world.

Large models do not fit on one device. A single layer of a big transformer may hold
hundreds of millions of numbers, and the activations of a long sequence take even more
memory than the weights. Tensor parallelism splits each large matrix across several
devices so that every device stores and multiplies only a slice. In a column parallel
linear layer each device keeps some of the output columns; it computes its part of the
result with no communication at all. In a row parallel linear layer each device keeps
some of the input rows; every device computes a partial sum, and an all reduce adds the
partial sums together so that every device ends with the full answer.

The trick that makes this cheap is to pair the two kinds of layer. The first projection
of an attention block or a feed forward block is split by columns, the second by rows.
The activations between them never leave their device, and only one all reduce is needed
in the forward pass and one in the backward pass. Attention heads split naturally: each
device owns a few heads and computes their queries, keys and values on its own.

Data parallelism is the other common way to use many devices. Every device holds a full
copy of the model and reads a different slice of the batch. After the backward pass the
gradients are averaged across devices, so every copy takes the same step and the copies
stay identical. Tensor parallelism and data parallelism combine well: a group of devices
shares one copy of the model through tensor parallelism, and several such groups train
side by side on different data.

Memory can be saved further by sharding the optimizer state. Adam keeps two extra numbers
for every weight, a running mean of the gradient and a running mean of its square. When
each data parallel rank keeps only its own share of these numbers, the memory for the
optimizer shrinks in proportion to the number of ranks, and the full weights are
gathered again after each update.

Correctness matters more than speed. A parallel run should produce the same loss as a
run on a single device, up to the small differences that come from adding numbers in a
different order. The best way to be sure is to test it: start every rank from the same
seed, run one step with one device and one step with many, and compare the losses, the
gradients and the updated weights. When they agree, the parallel code is doing the same
arithmetic as the simple code, only spread across more hardware.

Good training code is also honest about failure. When a matrix does not divide evenly
across devices, it says so and names the layer and the size. When a checkpoint is
missing a weight, it lists the missing name instead of silently starting from zeros.
When the loss becomes infinite, it stops and reports the step. Clear errors save more
time than fast kernels, because the hardest bugs are the ones that fail quietly.
)corpus"
    R"corpus(
The Baker's Morning

The bakery on the corner opens before the sun comes up. By four o'clock the baker has
already lit the ovens, and the room smells of warm flour and yeast. She works the same
way every day. First she weighs the flour, then the water, then the salt, and last of
all a small handful of the starter that she has kept alive for eleven years. She mixes
everything with her hands until the dough stops sticking to her fingers and begins to
feel smooth and alive. Then she covers the bowl with a cloth and lets it rest.

While the dough rests she sweeps the floor and sets out the baskets. She likes this
quiet hour best. The street outside is empty except for a cat that waits by the door,
and the only sound is the hum of the ovens. She thinks about the day ahead: the rolls
for the school, the long loaves for the restaurant across the square, the small round
cakes that the old man on the third floor buys every Friday for his granddaughter.

Bread teaches patience. If the dough is rushed it comes out dense and pale, and if it
is left too long it collapses in the oven. The baker has learned to read the dough the
way a sailor reads the sky. She presses it gently with one finger. If the dent springs
back slowly, the loaf is ready to shape. If it springs back at once, it needs more time.
If it does not spring back at all, she has waited too long, and she knows that the
bread will be flat, although the neighbors will eat it anyway and tell her it is fine.

When the first trays come out of the oven, the crust crackles as it cools. People say
that the bread is singing. The baker stacks the loaves on the wooden shelves, turns the
sign on the door, and the first customer of the day steps in from the cold, rubbing his
hands and asking, as he always does, whether the rye is ready yet.
)corpus"
    R"corpus(
A River in Four Seasons

In spring the river is loud and brown. Snow melts in the hills and the water rises over
the stones that children walk across in summer. Branches and leaves ride the current
down toward the town, and the old wooden bridge shakes a little when the flood is at
its highest. Fishermen stay away in those weeks. They sit in the cafe by the mill and
argue about where the big trout will be when the water clears.

In summer the river slows down and turns green. Dragonflies hover over the shallow
pools, and the smell of mint and wet grass drifts up from the banks. Families bring
blankets and baskets of food and spend whole afternoons in the shade of the willows.
The children build dams out of pebbles and are always surprised when the water finds a
way around them. A heron stands on one leg at the bend, so still that most people walk
past without seeing it.

In autumn the river carries the colors of the forest. Red and yellow leaves turn in
slow circles in the eddies, and the mornings are misty. The water is cold again, and
clear enough that you can count the stones on the bottom. This is the season the
fishermen wait for. They come early, stand in their tall boots in the current, and
cast their lines again and again with a patience that looks almost like prayer.

In winter the edges of the river freeze. Thin plates of ice grow out from the banks,
and on very cold nights they almost meet in the middle. The town is quiet. Smoke rises
straight up from the chimneys, and the only tracks along the path are those of a fox
that comes down every night to drink. Then one morning the air is softer, the ice
cracks with a sound like a gunshot, and the whole cycle begins again.
)corpus"
    R"corpus(
How a Lighthouse Keeper Spent His Evenings

For thirty years the lighthouse on the northern cape was kept by a man named Tobias.
He lived there alone for most of that time, with a dog, a radio and a shelf of books
that he read so often that the covers fell off. Every evening, an hour before sunset,
he climbed the one hundred and twelve steps of the tower to trim the wick, clean the
lens and wind the clockwork that turned the light. He counted the steps out loud. He
said that it kept him honest, because a man who loses count on the stairs will soon
lose count of other things.

The lens was as tall as a child and made of many rings of glass, each one cut at a
slightly different angle. Together they gathered the weak light of a single flame and
threw it twenty miles out to sea. Tobias polished every ring with a soft cloth and a
little alcohol. A smudge the size of a thumbprint, he said, could cost a ship a mile of
warning, and a mile is a long way in a storm.

After the light was lit he wrote in the log. He wrote down the wind and the weather,
the ships he saw and the time they passed. Most entries were short. Wind west, light
rain, two fishing boats returning at seven. Some nights he wrote more. He described the
color of the sky, a whale that surfaced close to the rocks, the sound the sea made when
the tide turned. Years later, when the light was automated and Tobias moved to the
village, people read his logs and were surprised to find that the lonely old keeper had
been writing, night after night, a long and careful letter to the world.
)corpus"
    R"corpus(
Notes on Learning to Play the Piano

Nobody learns the piano quickly. The first weeks are full of small humiliations. The
left hand refuses to do anything the right hand is not doing, the fingers land on the
wrong keys, and a simple tune that a child could hum takes twenty minutes to play once
without stopping. Most people give up at this stage, and it is easy to understand why.

The teachers who help the most say the same few things. Play slowly. Play so slowly
that you never make a mistake, because every mistake you repeat is a mistake you are
practicing. Break the piece into small parts and learn each part on its own before you
join them together. Start with the hardest bar, not with the first one, so that the
difficult passage does not always arrive when you are already tired. Count out loud.
Listen to what you are playing instead of watching your hands.

Progress does not come in a straight line. For days nothing seems to improve, and then
one morning a passage that was impossible the week before simply works, as if the hands
had been practicing in secret during the night. Scientists who study memory say that
this is not far from the truth: sleep helps the brain store what it rehearsed during
the day. So the best practice is short and regular. Half an hour every day is worth far
more than four hours on a Sunday.

After a year, the student can play a few simple pieces from beginning to end. After
five years, she can sit down at an unfamiliar piano in a stranger's house and play
something that makes the room go quiet. The road between those two points is long, but
every step along it is made of the same small things: a slow tempo, a careful ear and
the willingness to try the same bar one more time.
)corpus"
    R"corpus(
The Small Garden Behind the House

The garden behind the house is only ten steps long and six steps wide, but it feeds
the family for half of the year. Along the south wall, where the sun stays longest,
there are tomatoes tied to wooden stakes. In front of them grow beans that climb up
strings, then a row of lettuce, then carrots, onions and a tangle of herbs that nobody
has ever managed to keep in order. In the corner stands an apple tree that is older
than the house and still gives more apples than anyone can eat.

Gardening is mostly waiting and watching. The seeds go into the ground in April, and
for weeks it looks as if nothing is happening. Then a line of tiny green loops appears,
the first leaves unfold, and suddenly there is work every evening: weeds to pull, slugs
to catch, water to carry in heavy cans from the barrel under the gutter. The gardener
learns which plants like each other and which do not. Basil grows well beside the
tomatoes. Onions keep some insects away from the carrots. Beans put something into the
soil that the next year's cabbages are grateful for.

In August the garden gives back everything at once. There are more tomatoes than the
kitchen can use, so the family makes sauce and fills jars that line the cellar shelves.
Neighbors go home with bags of beans and zucchini they did not ask for. The apples fall
in September, and the smell of cooked fruit fills the house for a week. By November the
beds are bare again, covered with fallen leaves, and the gardener sits by the window
with a notebook, drawing next year's plan and promising, as every year, to plant fewer
zucchini.
)corpus"
    R"corpus(
Why Computers Count in Binary

A computer is built from switches that are either on or off. A single switch can only
tell two things apart, but a row of switches can tell many things apart. Two switches
have four possible settings, three switches have eight, and every extra switch doubles
the count. Eight switches together are called a byte, and a byte can hold any of two
hundred and fifty six different values. That is enough for every letter of the English
alphabet in upper and lower case, the ten digits, the marks of punctuation and a few
dozen symbols besides.

Numbers are stored the same way. In the decimal system each position is worth ten times
the position to its right: ones, tens, hundreds. In binary each position is worth twice
the one to its right: ones, twos, fours, eights. The number thirteen is written as one
eight, one four, no two and one one, or 1101. Adding binary numbers follows the same
rules children learn at school, with the pleasant difference that there are only two
digits to remember. One plus one is zero, carry one.

Fractions are harder. A computer stores most real numbers in a format called floating
point, which keeps a fixed number of significant binary digits and a separate exponent
that says where the point goes. This makes it possible to store both the mass of a star
and the width of an atom, but it comes at a price. Most decimal fractions cannot be
written exactly in binary, just as one third cannot be written exactly in decimal. The
computer rounds them, and the small rounding errors can add up. That is why careful
programs compare floating point results with a tolerance instead of asking whether two
numbers are exactly equal, and why the order in which a long list of numbers is added
can change the last few digits of the sum.
)corpus"
    R"corpus(
A Letter from the Mountains

Dear Anna,

We arrived at the hut late on Tuesday, soaked and tired and very happy. The path from
the valley was steeper than the map promised, and the last hour was in thick cloud, so
we saw nothing but the stones in front of our boots and the red and white marks painted
on the rocks. Then the wind pulled the cloud away all at once, and there was the hut,
with smoke coming out of the chimney and a row of wet socks hanging under the roof.

The hut is run by a couple who have spent every summer up here for twenty years. They
carry food up on their backs once a week, and everything else comes by a small cable
lift that squeaks like an old door. Dinner was soup, bread and a cheese that tasted of
the grass the cows had eaten. We slept in a long room with twelve other walkers, and
someone snored so loudly that the whole room started laughing in the dark.

This morning we got up at five to watch the sunrise. The air was so cold that it hurt
to breathe, and the stars were still out when we climbed the little hill behind the
hut. Then the sky turned grey, then pink, then gold, and one by one the peaks around us
caught the light, as if someone were switching on lamps in a huge dark hall. Nobody
said a word. Even the man who snores stood still with his hands in his pockets.

Tomorrow we cross the pass and walk down to the lake on the other side. I will write
again from there if I can find a stamp. I miss you, and I wish you could see all this.

With love,
Marta
)corpus"
    R"corpus(
On Keeping a Workshop in Order

An old carpenter once said that you can judge a workshop by how long it takes to find
a pencil. In a good workshop it takes no time at all, because the pencil is always in
the same place. Every tool has a home, and every tool goes back to its home when the
work is done. Chisels hang in a rack with their edges covered. Saws hang on the wall
in order of size. Screws are sorted by length in small drawers with labels written in
a clear hand. None of this is about being neat for its own sake. It is about being
able to think about the work instead of thinking about where things are.

The same carpenter sharpened his tools before he needed them. A dull chisel, he said,
is more dangerous than a sharp one, because you have to push it harder, and a tool that
is pushed too hard slips. He kept a flat stone and a jar of water by the bench and spent
a few minutes at the start of each day honing the tools he planned to use. He measured
twice and cut once, and when he did make a mistake he did not hide it. He put the ruined
piece on a shelf above the door, where everyone could see it, and kept it there until
he made the same mistake again, which he rarely did.

Good habits in a workshop are good habits in any kind of making. Keep your materials in
order. Prepare before you begin. Work in small steps and check each one. When something
goes wrong, stop and find out why before you continue, because a mistake found early
costs a minute, and a mistake found at the end can cost the whole piece.
)corpus"
    R"corpus(
The Night Train

The night train leaves the capital at ten minutes past nine. Most of the passengers
arrive early and stand on the platform with their bags, looking up at the board as if
it might change its mind. The sleeping cars are painted dark blue, with a thin gold
line along the windows. Inside, each compartment has two narrow beds, a folding table,
a tiny sink and a window with a blind that never quite closes.

For the first hour the train rolls through the suburbs, past lit kitchens and empty
car parks and the backs of factories. Then the lights thin out and the dark country
begins. The conductor comes by with tea in glass cups held in metal holders, and asks
what time everyone would like to be woken. Some people read. Some play cards on the
folding table. Most lie down early and listen to the wheels, which beat out the same
rhythm over every joint in the rails, two quick knocks and a pause, two quick knocks
and a pause, until the sound becomes part of the silence.

Sometimes the train stops in the middle of the night at a station with no name on the
sign. A lamp swings on the platform. A man in a heavy coat climbs on or off, a door
slams, someone shouts a word that could be a name, and the train moves on. In the
morning nobody can say where it was. The passengers wake to a different landscape:
flat fields, or mountains, or the grey edge of the sea. They fold the blankets, drink
the last of the tea and press their faces to the glass, trying to guess how far they
have come while they were sleeping.
)corpus"
    R"corpus(
How a Language Model Sees Text

A byte level language model does not know what a word is. It sees a long row of
numbers between zero and two hundred and fifty five, one number for each byte of the
text. The letter a is ninety seven, a space is thirty two, a new line is ten. At every
position the model is asked the same question: given all the bytes so far, how likely
is each possible next byte? The answer is a list of two hundred and fifty six
probabilities that add up to one.

At first the model guesses that every byte is equally likely. Its loss, the average
negative logarithm of the probability it gave to the byte that actually came next, is
then the logarithm of two hundred and fifty six, a little more than five and a half.
The first thing it learns is which bytes appear at all. English text uses only a few
dozen of the possible values, and simply learning to ignore the rest brings the loss
down quickly. Next it learns how often each letter appears, then which letters tend to
follow which: that t is often followed by h, that a space is usually followed by the
start of a common word, that a full stop is followed by a space and a capital letter.

Each of these lessons lowers the loss a little. A small model trained for a minute on a
few pages of text can get the loss well below three, which means that it narrows each
guess down from two hundred and fifty six choices to about a dozen plausible ones. It
still writes nonsense, but the nonsense has the shape of English: words of the right
length, spaces in the right places, and now and then a real word that it has seen many
times. Larger models trained on far more text go on to learn spelling, grammar and
eventually meaning, but they begin with exactly the same lessons.

Attention is what lets the model look back. At every position it compares the current
byte with all the earlier ones and decides which of them matter for the next guess. In
a word like because, the model can look back at the b and the e and the c and become
almost certain that an a and a u are coming. Across a longer span it can notice that a
quotation mark was opened and has not been closed yet, or that a sentence began with a
question word and will probably end with a question mark.
)corpus"
    R"corpus(
The Market on Saturday

On Saturday mornings the square in front of the town hall fills with wooden stalls.
The farmers arrive while it is still dark and unload their vans by the light of their
headlamps: crates of potatoes and apples, buckets of flowers, wheels of cheese wrapped
in cloth, trays of eggs in every shade from white to deep brown. By seven the coffee
stand is open, and the smell of roasting beans drifts across the square and draws the
early shoppers like a rope.

Every stall has its own character. The honey seller lets children taste from a small
wooden spoon and explains which flowers each jar came from. The fish man calls out his
prices in a voice that carries to the far end of the square, and makes jokes about his
own fish that his regular customers have heard a hundred times and still laugh at. The
old woman who sells herbs says very little, but she remembers what everyone bought the
week before and asks whether the cough is better or whether the soup turned out well.

People come to the market for food, but they also come for each other. Neighbors who
only nod to each other on weekdays stop and talk for half an hour beside the cabbages.
Musicians play in the corner by the fountain, and a dog that belongs to nobody in
particular makes a slow tour of the stalls, collecting small gifts of cheese rind and
sausage ends. By one o'clock the farmers pack up what is left, the sweepers come through
with their brooms, and the square is empty again, as if the whole thing had been a dream
that the town has together once a week.
)corpus"
    R"corpus(
Making a Map

Before there were satellites, every map began with someone walking. Surveyors carried
chains of a fixed length and counted how many times they laid them down between two
points. They measured angles with brass instruments set on three legs, and they climbed
hills and church towers to see far enough to sight the next marker. From a single
measured line and many careful angles they could work out the distances to points they
never visited, because the angles of a triangle fix its shape, and one known side fixes
its size.

The notes from the field were turned into a drawing in a quiet room with good light.
The mapmaker chose what to show and what to leave out, and this was the real art of the
work. A map that shows everything is as useless as no map at all. A walker needs paths,
streams, steep ground and the places where a bridge crosses the river. A sailor needs
the depth of the water, the rocks and the lights on the shore. The same valley could be
drawn a dozen ways for a dozen readers, and each drawing would be true.

Mistakes on old maps tell stories of their own. There are islands that were drawn for
centuries and never existed, mountains placed a hundred miles from where they stand,
and rivers that flow in the wrong direction. Some of these errors came from tired
travelers, some from copying an older map without checking it, and a few were put there
on purpose, as a trap for anyone who copied the map without paying for it. The best
mapmakers knew that a map is never finished. Each new survey corrected the last one,
and each correction made the picture of the world a little more exact.
)corpus"
    R"corpus(
The Clock in the Hall

The clock in the front hall was built by a great grandfather whom nobody living had
ever met. It stood taller than a man, in a case of dark wood with a glass door through
which you could watch the pendulum swing. Once a week, on Sunday evening, someone had to
open the door and pull the chains that lifted the weights, and this job was given to
whichever child had behaved best during the week. It was considered a great honor, and
it was fought over bitterly.

The clock was never quite right. In summer it lost a minute a day and in winter it
gained one, because the long metal rod of the pendulum grew a little in the heat and
shrank a little in the cold, and a longer pendulum swings more slowly. The family knew
this and did not mind. They set it by the radio on the first of every month and lived
the rest of the time a few minutes ahead of or behind the rest of the world. Visitors
who checked their watches against it were told, kindly, that the clock kept its own
time and always had.

When the house was sold, the clock was the last thing to leave. It took four people to
carry it down the steps, and the pendulum had to be tied in place with a scarf so that
it would not break. In the new apartment the ceiling was too low, and for a year it
lay on its side in a storage room. Then one of the grandchildren, now grown, built a
low platform in her own hallway, set the clock upright, hung the pendulum and gave it
a gentle push. It began to tick at once, as if it had only been waiting, and that
evening it struck seven at what the radio insisted was four minutes past.
)corpus"
    R"corpus(
What a Weather Forecast Means

When the forecast says that there is a sixty percent chance of rain tomorrow, many
people think it means that it will rain for sixty percent of the day, or over sixty
percent of the town. It means neither. It means that on days like tomorrow, as far as
the forecasters can tell, it rains on about six days out of ten. A good forecaster is
one whose numbers can be trusted in exactly this way: of all the days she called sixty
percent, it should really have rained on about sixty percent of them.

Forecasts are made by dividing the air above the earth into a huge grid of boxes and
computing, for each box, how its temperature, pressure, wind and moisture will change
over the next few minutes. The result of one small step becomes the starting point of
the next, and the computer repeats the calculation thousands of times to reach a day
or a week ahead. Small errors in the starting point grow as the steps pile up. That is
why a forecast for tomorrow is usually right and a forecast for ten days ahead is
little better than a guess.

To measure this uncertainty, forecasters run the same model many times, each time with
a slightly different starting point. If all the runs agree, the forecast is confident.
If they spread out in every direction, it is not, and an honest forecast says so.
Learning to read these numbers is a small but useful skill. A thirty percent chance is
not a promise of a dry day, and an eighty percent chance is not a promise of rain. Both
are advice about whether the umbrella is worth carrying.
)corpus";

}  // namespace

std::string_view embedded_corpus() {
  return kCorpus;
}

}  // namespace autotp
