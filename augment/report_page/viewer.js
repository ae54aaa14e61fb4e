// report.html's script, hand-written, no library (augment/report.py inlines it into the page):
// the sortable/filterable units table; one synchronised player per episode.
(function(){
  'use strict';
  function cellKey(td){
    if(td.dataset.value!==undefined){
      return td.dataset.value==='' ? null : parseFloat(td.dataset.value);
    }
    return td.textContent.trim().toLowerCase();
  }
  document.querySelectorAll('table.sortable').forEach(function(table){
    var ths=table.tHead.rows[0].cells;
    Array.prototype.forEach.call(ths,function(th,col){
      th.addEventListener('click',function(){
        var asc=th.getAttribute('aria-sort')!=='ascending';
        Array.prototype.forEach.call(ths,function(o){o.removeAttribute('aria-sort');});
        th.setAttribute('aria-sort',asc?'ascending':'descending');
        var body=table.tBodies[0];
        var rows=Array.prototype.slice.call(body.rows);
        rows.sort(function(a,b){
          var x=cellKey(a.cells[col]), y=cellKey(b.cells[col]);
          if(x===null&&y===null) return 0;
          if(x===null) return 1;   // empty cells last, whatever the direction
          if(y===null) return -1;
          var c=(x<y)?-1:(x>y)?1:0;
          return asc?c:-c;
        });
        rows.forEach(function(r){body.appendChild(r);});
      });
    });
  });
  var text=document.getElementById('unit-filter'), decision=document.getElementById('decision-filter');
  var count=document.getElementById('unit-count');
  function applyFilter(){
    var table=document.getElementById('units');
    if(!table) return;
    var q=(text.value||'').trim().toLowerCase(), d=decision.value, shown=0, rows=table.tBodies[0].rows;
    Array.prototype.forEach.call(rows,function(r){
      var ok=(!q||r.textContent.toLowerCase().indexOf(q)>=0)&&(!d||r.dataset.decision===d);
      r.hidden=!ok; if(ok) shown++;
    });
    count.textContent=shown+' of '+rows.length+' units';
  }
  if(text&&decision){
    text.addEventListener('input',applyFilter); decision.addEventListener('change',applyFilter); applyFilter();
  }

  document.querySelectorAll('.player').forEach(function(player){
    var videos=Array.prototype.slice.call(player.querySelectorAll('video'));
    if(!videos.length) return;
    var fps=parseFloat(player.dataset.fps)||5, frames=parseInt(player.dataset.frames,10)||1;
    var lead=videos[0], button=player.querySelector('button.play');
    var seek=player.querySelector('input.seek'), label=player.querySelector('.frame');
    var speed=player.querySelector('select.speed'), playing=false;
    function show(t){
      var f=Math.min(frames-1,Math.floor(t*fps+1e-6));
      seek.value=f; label.textContent='frame '+f+' / '+(frames-1);
    }
    function follow(){
      if(!playing) return;
      var t=lead.currentTime;
      videos.forEach(function(v){
        if(v!==lead&&Math.abs(v.currentTime-t)>0.5/fps&&t<v.duration) v.currentTime=t;
      });
      show(t);
      requestAnimationFrame(follow);
    }
    function play(){
      playing=true; button.textContent='\u275A\u275A pause';
      videos.forEach(function(v){
        v.playbackRate=parseFloat(speed.value);
        var p=v.play(); if(p&&p.catch) p.catch(function(){});  // a pause() before the start is no error
      });
      requestAnimationFrame(follow);
    }
    function pause(){
      playing=false; button.textContent='\u25B6 play';
      videos.forEach(function(v){v.pause();});
    }
    button.addEventListener('click',function(){ if(playing) pause(); else play(); });
    seek.addEventListener('input',function(){
      pause();
      var t=(parseInt(seek.value,10)+0.5)/fps;
      videos.forEach(function(v){v.currentTime=Math.min(t,v.duration||t);});
      show(t);
    });
    speed.addEventListener('change',function(){videos.forEach(function(v){v.playbackRate=parseFloat(speed.value);});});
    player.orvPlay=play; player.orvPause=pause;  // for tests and the console
  });
})();
